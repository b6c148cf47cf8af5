"""The markdown report: what was run, reproducibility, then one section per benchmark (its tables and genotypes),
and a pointer to the interactive HTML page."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .runs import BenchmarkInfo, RunResult
from .tables import CELL_TITLES, OP_ABBREVIATIONS, REPRODUCIBILITY, benchmark_tables

__all__ = ["write_markdown"]

log = logging.getLogger(__name__)


def _genotypes(runs: list[RunResult]) -> list[str]:
    """Per run: its headline, the cells as op(src->dst) strings and the genotype JSON."""
    lines = []
    for r in runs:
        lines += [f"#### {r.name} ({r.headline}, collapse count {r.collapse_count})", ""]
        for t in ("normal", "reduce"):
            if getattr(r.genotype, t):
                lines.append(f"- {CELL_TITLES[t]}: `{r.genotype.cell_string(t)}`")
        lines += [f"- JSON: `{json.dumps(r.genotype.to_dict(), separators=(',', ':'))}`", ""]
    return lines


def write_markdown(sections: list[tuple[BenchmarkInfo, list[RunResult]]], path: Path, context: dict[str, Any]) -> None:
    """Write the full markdown report.

    Args:
        sections: (benchmark, its runs in report order), benchmarks in report order.
        path: output file (its folder is created).
        context: optional ``title``, ``commands`` (list of command lines) and ``html_name`` (the HTML report's
            file name, default ``report.html``).
    """
    path = Path(path)
    html_name = context.get("html_name", "report.html")
    n_runs = sum(len(runs) for _, runs in sections)
    lines = [f"# {context.get('title', 'ITNAS ablation report')}", "", "## What was run", "",
             f"- {n_runs} runs on {len(sections)} benchmark{'s' if len(sections) != 1 else ''}:"]
    for info, runs in sections:
        methods = ", ".join(dict.fromkeys(r.method for r in runs)) or "none"
        seeds = ", ".join(str(s) for s in dict.fromkeys(r.seed for r in runs)) or "none"
        lines.append(f"  - {info.label} (`{info.name}`, evaluation {info.evaluation}): methods {methods} x seeds "
                     f"{seeds}; {info.size}")
    commands = context.get("commands") or []
    if commands:
        lines += ["- commands:", "", "  ```", *[f"  {c}" for c in commands], "  ```"]
    lines += ["", "## Reproducibility", "", REPRODUCIBILITY, ""]
    used = sorted({op for _, runs in sections for r in runs for t in ("normal", "reduce")
                   for op, _, _ in getattr(r.genotype, t)})
    for info, runs in sections:
        lines += [f"## {info.label}", "", f"Size: {info.size}", ""]
        if info.data:
            lines += [f"Data: {info.data}", ""]
        for label, text in info.settings.items():
            lines.append(f"- {label}: {text}")
        if info.settings:
            lines.append("")
        if not runs:
            lines += ["No runs.", ""]
            continue
        for table in benchmark_tables(info, runs):
            lines += [table.markdown(), ""]
        lines += [f"### {info.label}: genotypes", "", *_genotypes(runs)]
    legend = ", ".join(f"{OP_ABBREVIATIONS.get(op, op)} = {op}" for op in used)
    lines += ["## Figures", "",
              (f"Ops: {legend}. Interactive figures: [{html_name}]({html_name}) (one self-contained page), per "
               "benchmark: test accuracy per run and method (train) or the NAS-Bench-201 accuracies per method and "
               "derivation with the table's best cell (nb201), the collapse count per search epoch, and per run the "
               "cell graphs, alpha heatmaps with an epoch slider and the mean alpha entropy, and the learned "
               "transition matrices and attention weights of the last search epoch (ITNAS variants only)."), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    log.info("wrote %s (%d runs)", path, n_runs)
