"""The report as one self-contained interactive HTML page (plotly.js embedded once; opens offline): one section per
benchmark with its tables and figures."""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from ..evaluators.reports import get_report
from .cellgraph import genotype_figure
from .figures import alpha_figure, collapse_figure, has_transitions, transition_figures
from .runs import BenchmarkInfo, RunResult
from .tables import SELECTION_RULE, benchmark_tables

__all__ = ["write_html"]

log = logging.getLogger(__name__)

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1400px;margin:auto;
padding:0 1.5em 3em;color:#222}h1{margin-top:1em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.6em}p.note{color:#555}p.size{color:#333;font-style:italic}
table.results{border-collapse:collapse;margin:1em 0;font-size:.85em}
table.results caption{text-align:left;padding-bottom:.4em}table.results span.size{font-weight:normal;color:#555}
table.results th,table.results td{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}
table.results th{background:#f3f3f3}table.results code{font-size:.95em}nav li{margin:.2em 0}"""


def _anchor(name: str) -> str:
    return "bench-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def write_html(sections: list[tuple[BenchmarkInfo, list[RunResult]]], path: Path,
               title: str = "ITNAS ablation report") -> None:
    """Write one self-contained interactive HTML page (plotly.js embedded once; opens offline).

    One section per benchmark (`BenchmarkInfo`, its runs): its label, size line and data line; its tables
    (`itnas.report.tables.benchmark_tables`); (a) its evaluator's headline figure (`itnas.evaluators.Evaluator.figure`:
    test accuracy per run and method, or the NAS-Bench-201 accuracies per method and derivation, then its further
    figures (`Evaluator.figures`: the nb201 search trajectories)); (e) collapse count
    per search epoch;
    then per run: (b) the cell graphs, (c) alpha heatmaps with an epoch slider and the mean alpha entropy (nats),
    (d) the last epoch's transition matrices and attention (ITNAS variants; darts and pcdarts have none).
    """
    path = Path(path)
    parts: list[str] = []
    n_figs = 0

    def add(fig: go.Figure, responsive: bool = True) -> None:
        # plotly.js is embedded with the first figure only; later figures reuse it (one self-contained page).
        # Cell graphs have a fixed size (their labels are placed in pixels): not responsive.
        nonlocal n_figs
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=n_figs == 0,
                                 config={"responsive": responsive, "displaylogo": False}))
        n_figs += 1

    def text(tag: str, body: str, cls: str | None = None, ident: str | None = None) -> None:
        attrs = (f' class="{cls}"' if cls else "") + (f' id="{ident}"' if ident else "")
        parts.append(f"<{tag}{attrs}>{html.escape(body)}</{tag}>")

    n_runs = sum(len(runs) for _, runs in sections)
    text("h1", title)
    text("p", f"{n_runs} runs on {len(sections)} benchmark{'s' if len(sections) != 1 else ''}. Selection rule: "
              f"{SELECTION_RULE}. Mean ± sample standard deviation (ddof=1) over seeds; one seed is shown as n=1.",
         "note")
    parts.append("<nav><ul>" + "".join(f'<li><a href="#{_anchor(info.name)}">{html.escape(info.label)}</a> '
                                       f"({len(runs)} runs)</li>" for info, runs in sections) + "</ul></nav>")
    for info, runs in sections:
        text("h2", info.label, ident=_anchor(info.name))
        text("p", f"Size: {info.size}", "size")
        if info.data:
            text("p", f"Data: {info.data}", "note")
        if not runs:
            text("p", "No runs.", "note")
            continue
        for table in benchmark_tables(info, runs):
            parts.append(table.html())
        for heading, figure in get_report(info.evaluation).figures(runs):
            text("h3", f"{info.label}: {heading}")
            add(figure)
        if any(r.history for r in runs):
            text("h3", f"{info.label}: collapse count per search epoch")
            add(collapse_figure(runs))
        for r in runs:
            _run_section(r, add, text)
    doc = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
           + "\n".join(parts) + "\n</body>\n</html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    log.info("wrote %s (%.1f MB, %d runs, %d figures)", path, path.stat().st_size / 1e6, n_runs, n_figs)


def _run_section(r: RunResult, add, text) -> None:
    """One run: its cell graphs, alpha heatmaps and (ITNAS variants) transition matrices and attention."""
    text("h3", r.name)
    add(genotype_figure(r.genotype, f"{r.name}: {r.headline}, collapse count {r.collapse_count}"), responsive=False)
    if not r.history:
        text("p", f"{r.name}: no search history (search/history.json missing); search plots left out.", "note")
        return
    add(alpha_figure(r))
    if not has_transitions(r):
        text("p", f"{r.name}: no transition matrices (inner edges with their own softmax, as in darts and pcdarts).",
             "note")
    for item in transition_figures(r):
        if isinstance(item, str):
            text("p", item, "note")
        else:
            add(item)
