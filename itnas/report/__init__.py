"""Cross-benchmark ablation report over searched and evaluated runs: a markdown report, one self-contained HTML page
and a small metrics summary.

One role per module:

- `runs`: a run folder (`itnas.run.RunRecord`: ``metrics.json``, ``genotype.json``, ``evaluate/details.json``,
  ``search/history.json``, ``search_metrics.json``) -> `RunResult` (`load_run`; its evaluator is the one its
  metrics.json names; a missing file is a `RunFilesMissing` naming the file), and `BenchmarkInfo`, what the caller
  says about a benchmark (label, evaluation, size line, data);
- `info`: `benchmark_info`, the `BenchmarkInfo` of a benchmark from the params model (`itnas.params`) and the
  prepare stage's summaries (size line, data line, settings);
- `stats`: mean ± sample std over seeds (`Stat`, `method_stats`) and the metrics file (`summary_metrics`);
- `pairs`: one method vs another over seeds: Welch's interval of the mean difference, Mann-Whitney U, a plain
  reading (`compare_pair`);
- `tables`: `Table` and what the evaluators' tables share (formats, published numbers of ``published.json``,
  `load_published`); `benchmark_tables` asks the benchmark's evaluator (`itnas.evaluators`) for its tables;
- `markdown`: the markdown report (`write_markdown`);
- `figures` / `cellgraph`: the plotly figures (the evaluators draw their headline figure; cell graphs with
  non-overlapping edge
  labels, alpha heatmaps, transitions, collapse);
- `page`: the self-contained HTML page (`write_html`).

The library knows nothing of DVC or of the pipeline's paths; it logs through `logging` and never prints.
"""

from .cellgraph import genotype_figure, label_boxes
from .markdown import write_markdown
from .page import write_html
from .runs import BenchmarkInfo, RunFilesMissing, RunResult, load_run
from .stats import Stat, method_stats, stat, summary_metrics
from .tables import (
    CELL_TITLES,
    OP_ABBREVIATIONS,
    SELECTION_RULE,
    Table,
    benchmark_tables,
    load_published,
)

__all__ = ["CELL_TITLES", "OP_ABBREVIATIONS", "SELECTION_RULE", "BenchmarkInfo", "RunFilesMissing",
           "RunResult", "Stat", "Table", "benchmark_tables", "genotype_figure", "label_boxes", "load_published",
           "load_run", "method_stats", "stat", "summary_metrics", "write_html", "write_markdown"]
