"""Stage `report`: the ablation report over every (method, seed) run -> reports/report.md and reports/report.html."""

from __future__ import annotations

import json

from itnas.report import RunFilesMissing, RunResult, load_run, method_summary, write_html, write_markdown

from .common import console, derive_config, load_params, run_dir, run_list, search_config, train_config
from .paths import REPORT_DIR, TRAIN_DATA_DIR

SUMMARY_FILE = TRAIN_DATA_DIR / "summary.json"  # written by the prepare stage
COMMANDS = ["dvc repro            # runs, in order:", "itnas check-params", "itnas prepare",
            "itnas search METHOD SEED   # then derive, train, evaluate; once per (method, seed) of `runs`",
            "itnas report"]


def _settings(params: dict, runs: list[tuple[str, int]]) -> dict[str, str]:
    """One line per method's search settings, plus derivation and final training (from params.yaml)."""
    out = {}
    for method in dict.fromkeys(m for m, _ in runs):
        c = search_config(params, method, 0)
        s, d = c.supernet, c.data
        out[f"search, {method}"] = (f"space {s.space}, base {c.base}, C={s.C}, {s.layers} cells, {c.schedule.epochs} "
                                    f"epochs ({c.schedule.warmup_epochs} warm-up), batch {d.batch_size}, "
                                    f"{c.arch_optimizer.order}-order, images {d.image_size or 'native'} px")
    out["derive"] = f"mode {derive_config(params).mode}"
    t = train_config(params)
    n, d = t.network, t.data
    out["final training"] = (f"C={n.C}, {n.layers} cells, stem stride {n.stem_stride}, {t.epochs} epochs, "
                             f"batch {d.batch_size}, images {d.image_size or 'native'} px, auxiliary {n.auxiliary}, "
                             f"drop-path {t.regularization.drop_path}, cutout {d.cutout}")
    return out


def _load(method: str, seed: int) -> RunResult:
    """`load_run`; a missing run file becomes a FileNotFoundError that names the command writing it."""
    try:
        return load_run(run_dir(method, seed), method, seed)
    except RunFilesMissing as err:
        raise FileNotFoundError(f"{err}; it is written by the {err.stage} stage (run `dvc repro` or "
                                f"`itnas {err.stage} {method} {seed}` first)") from None


def report(params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    pairs = run_list(params)
    runs = [_load(m, s) for m, s in pairs]
    if SUMMARY_FILE.exists():
        summary = json.loads(SUMMARY_FILE.read_text())
        dataset, test_images = summary.get("dataset", "unknown"), summary.get("test_size")
    else:
        console.print(f"[yellow]{SUMMARY_FILE} missing (prepare stage); the report names no data set")
        dataset, test_images = "unknown data set", runs[0].metrics.get("test_images") if runs else None
    context = {"dataset": dataset, "test_images": test_images, "commands": COMMANDS,
               "settings": _settings(params, pairs)}
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    write_markdown(runs, REPORT_DIR / "report.md", context)
    write_html(runs, REPORT_DIR / "report.html")
    console.print(f"report over {len(runs)} runs ({dataset}, {test_images} test images):")
    for s in method_summary(runs):
        std = f" ± {s.test_acc_std:.2f}" if s.test_acc_std is not None else ""
        console.print(f"  {s.method:<14} test acc {s.test_acc_mean:.2f}{std} % (n={s.n}), "
                      f"collapse {s.collapse_mean:.1f}")
    console.print(f"-> {REPORT_DIR / 'report.md'}, {REPORT_DIR / 'report.html'}")
