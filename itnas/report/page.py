"""The report as one self-contained interactive HTML page (plotly.js embedded once; opens offline)."""

from __future__ import annotations

import html
import logging
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from .figures import (
    accuracy_figure,
    alpha_figure,
    collapse_figure,
    genotype_figure,
    has_transitions,
    transition_figures,
)
from .runs import RunResult
from .tables import SELECTION_RULE

__all__ = ["write_html"]

log = logging.getLogger(__name__)

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1400px;margin:auto;
padding:0 1.5em 3em;color:#222}h1{margin-top:1em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
p.note{color:#555}"""


def write_html(runs: list[RunResult], path: Path, title: str = "ITNAS ablation report") -> None:
    """Write one self-contained interactive HTML page (plotly.js embedded once; opens offline).

    Sections: (a) test accuracy per run and per method (mean ± sample std); (b) every genotype drawn as cell
    graphs (parameter-free ops in red); (c) per run, alpha heatmaps (edges x ops, epoch slider, final epoch shown)
    and mean alpha entropy (nats) per epoch; (d) per ITNAS-variant run, the last epoch's transition matrices and
    attention weights (runs without transitions, darts and pcdarts, are skipped); (e) collapse count per epoch.
    """
    path = Path(path)
    parts: list[str] = []

    def add(fig: go.Figure) -> None:
        # plotly.js is embedded with the first figure only; later figures reuse it (one self-contained page)
        n_figs = sum(1 for p in parts if p.startswith("<div"))
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=n_figs == 0, config={"responsive": True}))

    def text(tag: str, body: str, cls: str | None = None) -> None:
        attr = f' class="{cls}"' if cls else ""
        parts.append(f"<{tag}{attr}>{html.escape(body)}</{tag}>")

    text("h1", title)
    text("p", f"{len(runs)} runs. Selection rule: {SELECTION_RULE}. Mean ± sample standard deviation (ddof=1) over "
              "seeds.", "note")
    text("h2", "(a) Test accuracy")
    add(accuracy_figure(runs))
    text("h2", "(b) Derived genotypes")
    text("p", "Nodes left to right: cell inputs, intermediate nodes, cell output. Each kept edge is labelled "
              "with its op; parameter-free ops (the collapse indicator) are red.", "note")
    for r in runs:
        add(genotype_figure(r))
    text("h2", "(c) Architecture weights over the search")
    text("p", "Alphas of every edge (rows) and op (columns); the slider steps through the search epochs. Squares "
              "mark the derived genotype. Right: mean entropy of the edges' alphas per epoch.", "note")
    for r in runs:
        if r.history:
            add(alpha_figure(r))
        else:
            text("p", f"{r.name}: no search history (search/history.json missing).", "note")
    text("h2", "(d) Transition matrices and attention (last search epoch)")
    skipped = [r.name for r in runs if not has_transitions(r)]
    if skipped:
        text("p", f"No transitions (inner edges with their own softmax, as darts and pcdarts), not shown: "
                  f"{', '.join(skipped)}.", "note")
    for r in runs:
        for item in transition_figures(r):
            if isinstance(item, str):
                text("p", item, "note")
            else:
                add(item)
    text("h2", "(e) Collapse count per search epoch")
    add(collapse_figure(runs))
    doc = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
           + "\n".join(parts) + "\n</body>\n</html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    log.info("wrote %s (%.1f MB, %d runs)", path, path.stat().st_size / 1e6, len(runs))

