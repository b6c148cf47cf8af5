"""Ablation report over searched, trained and evaluated runs: a markdown summary and one self-contained HTML page.

One role per module:

- `runs`: a run folder (``metrics.json``, ``genotype.json``, ``search/history.json``) -> `RunResult`
  (`load_run`; a missing file is a `RunFilesMissing` naming the file);
- `tables`: statistics over seeds (`method_summary`) and the markdown report (`ablation_table`,
  `write_markdown`), with the published numbers of ``published.json`` (`load_published`, each with its source);
- `figures`: the plotly figures (accuracy, genotype graphs, alpha heatmaps, transitions, collapse);
- `page`: the self-contained HTML page (`write_html`).

The library knows nothing of DVC or of the pipeline's paths; it logs through `logging` and never prints.
"""

from .page import write_html
from .runs import RUN_FILES, RunFilesMissing, RunResult, load_run
from .tables import (
    CELL_TITLES,
    OP_ABBREVIATIONS,
    SELECTION_RULE,
    MethodSummary,
    ablation_table,
    load_published,
    method_summary,
    write_markdown,
)

__all__ = ["CELL_TITLES", "OP_ABBREVIATIONS", "RUN_FILES", "SELECTION_RULE", "MethodSummary", "RunFilesMissing",
           "RunResult", "ablation_table", "load_published", "load_run", "method_summary", "write_html",
           "write_markdown"]
