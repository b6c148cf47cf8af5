"""Stage `report`: one cross-benchmark ablation report over every (benchmark, method, seed) chain of `runs` ->
reports/report.md, reports/report.html and reports/summary.json (the metrics `dvc exp show` compares).

`--runs-dir` / `--out-dir` render results kept elsewhere with their own params file, e.g. committed results:
`itnas report --params reports/benchmarks/params-nb201.yaml --runs-dir reports/benchmarks/runs
--out-dir reports/benchmarks`.
"""

from __future__ import annotations

from pathlib import Path

from itnas.errors import MissingOutputError
from itnas.params import load_params
from itnas.report import (
    RunFilesMissing,
    RunResult,
    load_run,
    summary_metrics,
    write_html,
    write_markdown,
)
from itnas.report.info import benchmark_info
from itnas.run import RunRecord

from .common import console, write_json
from .paths import REPORT_DIR, RUNS_DIR, prepared_dirs

COMMANDS = ["dvc repro            # runs, in order:", "itnas check-params", "itnas prepare BENCHMARK",
            "itnas search BENCHMARK METHOD SEED   # then derive, train (runs.benchmarks only), evaluate; once per "
            "chain of `runs`",
            "itnas report"]
"""The commands the report names as the way to reproduce it (every stage command of dvc.yaml, in order)."""

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
        info = benchmark_info(params, benchmark, list(dict.fromkeys(m for m, _ in mine)), prepared_dirs(benchmark))
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
