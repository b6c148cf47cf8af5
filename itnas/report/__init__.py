"""Cross-benchmark ablation report over searched and evaluated runs: a markdown report, one self-contained HTML page
and a small metrics summary.

One role per module:

- `runs`: a run folder (``metrics.json``, ``genotype.json``, ``evaluate/details.json``, ``search/history.json``,
  ``search_metrics.json``) -> `RunResult` (`load_run`; train or nb201 evaluation; a missing file is a
  `RunFilesMissing` naming the file), and `BenchmarkInfo`, what the caller says about a benchmark (label,
  evaluation, size line, data);
- `stats`: mean ± sample std over seeds (`Stat`, `method_stats`) and the metrics file (`summary_metrics`);
- `tables`: per benchmark the method x metric table, published numbers for scale (``published.json``,
  `load_published`, each with its source) and one row per run (`benchmark_tables`, `Table`);
- `markdown`: the markdown report (`write_markdown`);
- `figures` / `cellgraph`: the plotly figures (accuracy, NAS-Bench-201 bars, cell graphs with non-overlapping edge
  labels, alpha heatmaps, transitions, collapse);
- `page`: the self-contained HTML page (`write_html`).

The library knows nothing of DVC or of the pipeline's paths; it logs through `logging` and never prints.
"""

from .cellgraph import genotype_figure, label_boxes
from .markdown import write_markdown
from .page import write_html
from .runs import RUN_FILES, BenchmarkInfo, RunFilesMissing, RunResult, load_run
from .stats import Stat, method_stats, stat, summary_metrics
from .tables import (
    CELL_TITLES,
    OP_ABBREVIATIONS,
    SELECTION_RULE,
    Table,
    benchmark_tables,
    load_published,
)

__all__ = ["CELL_TITLES", "OP_ABBREVIATIONS", "RUN_FILES", "SELECTION_RULE", "BenchmarkInfo", "RunFilesMissing",
           "RunResult", "Stat", "Table", "benchmark_tables", "genotype_figure", "label_boxes", "load_published",
           "load_run", "method_stats", "stat", "summary_metrics", "write_html", "write_markdown"]
