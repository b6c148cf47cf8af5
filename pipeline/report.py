"""Stage `report`: the ablation report over every (method, seed) run -> reports/report.md and reports/report.html."""

from __future__ import annotations

import json
from pathlib import Path

from itnas.arch import get_method
from itnas.report import load_run, method_summary, write_html, write_markdown

from .common import DATA_FILE, console, derive_config, load_params, run_dir, run_list, search_config, train_config

REPORT_DIR = Path("reports")
SUMMARY_FILE = DATA_FILE.with_name("summary.json")
COMMANDS = ["dvc repro            # runs, in order:", "itnas prepare",
            "itnas search METHOD SEED   # then derive, train, evaluate; once per (method, seed) of `runs`",
            "itnas report"]


def _settings(params: dict, runs: list[tuple[str, int]]) -> dict[str, str]:
    """One line per method's search settings, plus derivation and final training (from params.yaml)."""
    out = {}
    for method in dict.fromkeys(m for m, _ in runs):
        c = search_config(params, method, 0)
        base = get_method(method).default_base if c.base == "auto" else c.base
        out[f"search, {method}"] = (f"space {c.space}, base {base}, C={c.C}, {c.layers} cells, {c.epochs} epochs "
                                    f"({c.warmup_epochs} warm-up), batch {c.batch_size}, {c.order}-order, "
                                    f"images {c.image_size or 'native'} px")
    out["derive"] = f"mode {derive_config(params).mode}"
    t = train_config(params)
    out["final training"] = (f"C={t.C}, {t.layers} cells, stem stride {t.stem_stride}, {t.epochs} epochs, "
                             f"batch {t.batch_size}, images {t.image_size or 'native'} px, auxiliary {t.auxiliary}, "
                             f"drop-path {t.drop_path}, cutout {t.cutout}")
    return out


def report(params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    pairs = run_list(params)
    runs = [load_run(run_dir(m, s), m, s) for m, s in pairs]
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
