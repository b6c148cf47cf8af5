"""Stage `report`: one cross-benchmark ablation report over every (benchmark, method, seed) chain of `runs` ->
reports/report.md, reports/report.html and reports/summary.json (the metrics `dvc exp show` compares).

`--runs-dir` / `--out-dir` render results kept elsewhere with their own params file, e.g. committed results:
`itnas report --params reports/benchmarks/params-nb201.yaml --runs-dir reports/benchmarks/runs
--out-dir reports/benchmarks`.
"""

from __future__ import annotations

import json
from pathlib import Path

from itnas.errors import MissingOutputError
from itnas.evaluators.registry import get_evaluator
from itnas.params import Params, load_params
from itnas.report import (
    BenchmarkInfo,
    RunFilesMissing,
    RunResult,
    load_run,
    summary_metrics,
    write_html,
    write_markdown,
)
from itnas.run import RunRecord

from .common import console, write_json
from .paths import REPORT_DIR, RUNS_DIR, prepared_dirs

COMMANDS = ["dvc repro            # runs, in order:", "itnas check-params", "itnas prepare BENCHMARK",
            "itnas search BENCHMARK METHOD SEED   # then derive, evaluate; once per chain of `runs`",
            "itnas report"]

#: Paper search sizes (docs/method.md 3): (C, cells, epochs) of the DARTS-space search and, by space layout, the
#: NB201 search (C=16, 5 cells per stage, 50 epochs).
PAPER_SEARCH = {"darts": (16, 8, 50), "nb201": (16, 5, 50)}


def size_line(params: Params, benchmark: str, methods: list[str]) -> str:
    """What was run, in one line: "CPU-reduced search: space darts, C=8, 5 cells, 5000 + 5000 images at 16 px, 6
    epochs; training: C=16, 8 cells, 10 epochs", each part "paper recipe" when at least the paper's size."""
    data = params.data_config(benchmark)
    c = params.search_config(benchmark, methods[0], 0)
    s = c.supernet
    pc, pl, pe = PAPER_SEARCH["nb201" if s.space == "nb201" else "darts"]
    cells = "cells per stage" if s.space == "nb201" else "cells"
    px = f"{c.data.image_size} px" if c.data.image_size else "native size"
    epochs = sorted({params.search_config(benchmark, m, 0).schedule.epochs for m in methods})
    paper = s.C >= pc and s.layers >= pl and min(epochs) >= pe and not c.data.image_size
    search = (f"search: paper recipe (space {s.space})" if paper else
              f"CPU-reduced search: space {s.space}, C={s.C}, {s.layers} {cells}, {data.search_train_size} + "
              f"{data.search_val_size} images at {px}, {'/'.join(map(str, epochs))} epochs")
    evaluator = get_evaluator(params.evaluation(benchmark))
    return f"{search}; {evaluator.size_text(params.train_config(benchmark))}"


def _data_line(benchmark: str, trains: bool) -> str | None:
    """One line from the prepare stage's summaries (data/prepared/<benchmark>/{search,train}/summary.json), None
    when neither exists (e.g. results rendered without their prepared data)."""
    search_dir, train_dir = prepared_dirs(benchmark)
    summaries = {k: json.loads((d / "summary.json").read_text()) for k, d in (("search", search_dir),
                                                                              ("train", train_dir))
                 if (d / "summary.json").exists()}
    if not summaries:
        return None
    first = summaries.get("search") or summaries["train"]
    side = first.get("image_size")
    parts = [f"{first.get('dataset', 'unknown')}: {len(first.get('classes') or [])} classes, "
             f"{first.get('in_channels', '?')} x {side} x {side} px"]
    if "search" in summaries:
        s = summaries["search"]
        parts.append(f"search: {s.get('search_train_size')} search-train + {s.get('search_val_size')} search-val "
                     "images")
    if "train" in summaries and trains:
        t = summaries["train"]
        parts.append(f"final training: {t.get('train_size')} images; test: {t.get('test_size')} images that search, "
                     "derivation and training never see")
    return "; ".join(parts)


def _settings(params: Params, benchmark: str, methods: list[str]) -> dict[str, str]:
    """One line per method's search settings, plus derivation and final training (from the params)."""
    out = {}
    for method in methods:
        c = params.search_config(benchmark, method, 0)
        s, d = c.supernet, c.data
        out[f"search, {method}"] = (f"space {s.space}, base {c.base}, C={s.C}, {s.layers} cells, {c.schedule.epochs} "
                                    f"epochs ({c.schedule.warmup_epochs} warm-up), batch {d.batch_size}, "
                                    f"{c.arch_optimizer.order}-order, images {d.image_size or 'native'} px")
    out["derive"] = f"mode {params.derive.mode}"
    out.update(get_evaluator(params.evaluation(benchmark)).settings(params.train_config(benchmark)))
    return out


def benchmark_info(params: Params, benchmark: str, methods: list[str]) -> BenchmarkInfo:
    """What the report says about `benchmark` besides its runs (label, evaluation, size and data lines, settings)."""
    evaluation = params.evaluation(benchmark)
    return BenchmarkInfo(
        name=benchmark, label=params.label(benchmark), evaluation=evaluation,
        size=size_line(params, benchmark, methods), dataset=params.data_config(benchmark).dataset,
        space=params.search_config(benchmark, methods[0], 0).supernet.space, derivation=params.derive.mode,
        data=_data_line(benchmark, get_evaluator(evaluation).trains), settings=_settings(params, benchmark, methods))


def _load(runs_dir: Path, benchmark: str, method: str, seed: int, evaluation: str) -> RunResult:
    """`load_run`; a missing run file becomes a MissingOutputError that names the file and the command writing it."""
    try:
        return load_run(RunRecord(benchmark, method, seed, runs_dir), evaluation)
    except RunFilesMissing as err:
        where = "" if runs_dir == RUNS_DIR else f", then copy its run folder under {runs_dir}"
        raise MissingOutputError(f"{err}: run `itnas {err.stage} {benchmark} {method} {seed}` (or `dvc repro`)"
                                 f"{where}") from None


def report(params_file: str = "params.yaml", runs_dir: str | Path = RUNS_DIR, out_dir: str | Path = REPORT_DIR) -> None:
    """Report over every chain of `runs` in `params_file`, read from `runs_dir`
    (<runs_dir>/<benchmark>/<method>-s<seed>/), written to `out_dir`: report.md, report.html and summary.json
    (`itnas.report.summary_metrics`). A `runs_dir` other than runs/ (a folder of copied results) may hold a subset
    of the chains: the report covers the chains whose folder it holds. Raises MissingOutputError naming a missing
    run file and the command that writes it, ConfigError for bad params."""
    params = load_params(params_file)
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    chains = params.chains()
    if runs_dir != RUNS_DIR:  # a results folder (e.g. committed runs) may hold a subset of the chains
        present = [c for c in chains if RunRecord(*c, runs_dir).root.is_dir()]
        if not present:
            raise MissingOutputError(f"{runs_dir} holds none of the chains of {params_file} "
                                     f"({', '.join(RunRecord(*c).name for c in chains[:3])}, ...)")
        if len(present) < len(chains):
            console.print(f"{runs_dir} holds {len(present)} of the {len(chains)} chains of {params_file}; reporting "
                          f"those")
        chains = present
    sections = []
    for benchmark in dict.fromkeys(b for b, _, _ in chains):
        mine = [(m, s) for b, m, s in chains if b == benchmark]
        info = benchmark_info(params, benchmark, list(dict.fromkeys(m for m, _ in mine)))
        sections.append((info, [_load(runs_dir, benchmark, m, s, info.evaluation) for m, s in mine]))
    commands = COMMANDS if (runs_dir, out_dir) == (RUNS_DIR, REPORT_DIR) else [
        f"itnas report --params {params_file} --runs-dir {runs_dir} --out-dir {out_dir}"]
    write_markdown(sections, out_dir / "report.md", {"commands": commands})
    write_html(sections, out_dir / "report.html")
    summary = summary_metrics([r for _, runs in sections for r in runs])
    write_json(out_dir / "summary.json", summary)
    console.print(f"report over {len(chains)} runs on {len(sections)} benchmarks:")
    for info, _ in sections:
        for method, row in summary[info.name].items():
            shown = {k: v for k, v in row.items() if "mean" in v and not k.startswith("seq_")}
            text = ", ".join(f"{k} {v['mean']}" + (f" ± {v['std']}" if v["std"] is not None else "") + f" (n={v['n']})"
                             for k, v in shown.items())
            console.print(f"  {info.label} / {method}: {text}; collapsed {row['collapsed']['count']} of "
                          f"{row['collapsed']['n']}")
    console.print(f"-> {out_dir / 'report.md'}, {out_dir / 'report.html'}, {out_dir / 'summary.json'}")
