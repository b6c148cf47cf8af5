"""The report's tables, one set per benchmark (`benchmark_tables`), each a `Table` that renders as markdown and HTML.

Per benchmark, as its evaluator makes them (`itnas.evaluators.Evaluator.tables`): a method x metric table (mean ±
sample std over seeds, n shown; std only for n >= 2), the published numbers of ``published.json`` for scale where
they exist (`load_published`), and one row per run. Every table is titled with the benchmark's label and carries
the caller's size line. This module holds what the evaluators share: `Table`, the cell and number formats, the
published DARTS-space CIFAR-10 table (`published_table`).

Selection rule (`SELECTION_RULE`): every seed is reported, nothing is selected on test data. Published numbers
are best-of-several searches at paper size: for context only, never compared with this pipeline's numbers.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..evaluators.reports import get_report
from ..genotype import Genotype
from .runs import BenchmarkInfo, RunResult
from .stats import Stat

__all__ = ["CELL_TITLES", "OP_ABBREVIATIONS", "REPRODUCIBILITY", "SELECTION_RULE", "Table", "benchmark_tables",
           "compact_cell", "fmt", "load_published", "margin_text", "margins", "method_groups", "published_table",
           "seeds_text"]

#: What a rerun reproduces, and what a comparison of methods needs (shown in every report).
REPRODUCIBILITY = (
    "A rerun with the same params is bitwise identical on the same machine type (the `threads` param fixes the "
    "thread count of every stage process on a CPU). A float64 search (`search.precision.dtype: float64`, the CPU "
    "default) also derives the same genotype at another thread count: on the default Fashion-MNIST search, 1 and 2 "
    "threads ended with bitwise-identical alphas for itnas and darts (reports/experiments/thread-check-default.json); "
    "other CPU types were not measured. A float32 search (GPU runs; here the nb201 and cifar10 benchmarks) reduces "
    "in an order that depends on the thread count and the CPU type, and the differences grow during training: the "
    "same default searches in float32 at 1 and 2 threads ended with alphas 0.15-0.19 apart and genotypes that differ "
    "in 3-6 of the 8 edges of a cell (reports/experiments/thread-check-default-float32.json). The margins column says "
    "how decided each genotype is. One seed ranks nothing: compare methods by the mean ± std over several seeds, "
    "and read differences smaller than that std as noise.")

SELECTION_RULE = ("every seed is reported; no selection on test data; "
                  "the model of the last training epoch is evaluated once")

#: Short op names for tables and cell graphs (a legend names the full op).
OP_ABBREVIATIONS = {"none": "none", "max_pool_3x3": "max3", "avg_pool_3x3": "avg3", "skip_connect": "skip",
                    "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3", "dil_conv_5x5": "dil5",
                    "nor_conv_1x1": "conv1", "nor_conv_3x3": "conv3", "noise": "noise"}

#: Cell type -> its name in titles.
CELL_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}

_PUBLISHED_LABEL = "published (best of several searches, paper size)"


@dataclass
class Table:
    """A titled table: `title` (names the benchmark), `size` (the caller's size line), header, rows of text cells,
    `notes` (paragraphs under it) and `code_columns` (indices of columns shown as code)."""

    title: str
    size: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    code_columns: tuple[int, ...] = ()

    def markdown(self) -> str:
        """``### title``, the size line, a pipe table and the notes."""
        def cell(k: int, text: str) -> str:
            text = text.replace("|", "\\|")
            return f"`{text}`" if k in self.code_columns and text not in ("", "n/a", "–") else text
        lines = [f"### {self.title}", "", f"Size: {self.size}", "",
                 "| " + " | ".join(self.header) + " |", "|" + "|".join(" --- " for _ in self.header) + "|"]
        lines += ["| " + " | ".join(cell(k, c) for k, c in enumerate(row)) + " |" for row in self.rows]
        for note in self.notes:
            lines += ["", note]
        return "\n".join(lines)

    def html(self) -> str:
        """A ``<table>`` with the title and size line as caption, then the notes as paragraphs."""
        def cell(k: int, text: str, tag: str) -> str:
            body = html.escape(text)
            return f"<{tag}>{f'<code>{body}</code>' if k in self.code_columns else body}</{tag}>"
        head = "".join(cell(-1, h, "th") for h in self.header)
        body = "\n".join("<tr>" + "".join(cell(k, c, "td") for k, c in enumerate(row)) + "</tr>" for row in self.rows)
        notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in self.notes)
        return (f'<table class="results"><caption><b>{html.escape(self.title)}</b><br><span class="size">Size: '
                f"{html.escape(self.size)}</span></caption>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n"
                f"</tbody></table>{notes}")


def load_published() -> dict[str, Any]:
    """The published numbers of ``published.json`` (next to this module): each with its source (paper, table).

    Keys: ``cifar10`` (one entry per method: ``darts_space`` CIFAR-10 test error (%) ± std, params (M), search cost
    (GPU-days), or null; ``nb201`` test accuracy (%) on CIFAR-10 / CIFAR-100 / ImageNet16-120 and a note),
    ``imagenet`` (top-1 error (%) per method), ``about`` and ``units``.
    """
    return json.loads(resources.files(__package__).joinpath("published.json").read_text(encoding="utf-8"))


def compact_cell(genotype: Genotype, cell_type: str) -> str:
    """Abbreviated edges ``sep3(0->2) skip(1->2) ...`` ('n/a' when the genotype has no such cell)."""
    edges = getattr(genotype, cell_type)
    if not edges:
        return "n/a"
    return " ".join(f"{OP_ABBREVIATIONS.get(op, op)}({s}->{d})" for op, s, d in edges)


def fmt(value: Any, spec: str = ".2f") -> str:
    return "n/a" if value is None else f"{float(value):{spec}}"


def seeds_text(group: list[RunResult]) -> str:
    return f"{', '.join(str(r.seed) for r in group)} (n={len(group)})"


def method_groups(runs: list[RunResult]) -> dict[str, list[RunResult]]:
    out: dict[str, list[RunResult]] = {}
    for r in runs:
        out.setdefault(r.method, []).append(r)
    return out


def margin_text(s: Stat) -> str:
    return s.text(".2g")


def published_table(info: BenchmarkInfo) -> Table:
    """Published DARTS-space CIFAR-10 results (paper-size networks), beside a CIFAR-10 train benchmark."""
    header = ["reference", "CIFAR-10 test error (%)", "test acc (%)", "params (M)", "search cost (GPU-days)",
              "source"]
    rows = []
    for entry in load_published()["cifar10"]:
        d = entry["darts_space"]
        if d is None:
            continue
        rows.append([f"{_PUBLISHED_LABEL}: {entry['method']}", f"{d['test_error_pct']:.2f} ± "
                     f"{d['test_error_std_pct']:.2f}", f"{100 - d['test_error_pct']:.2f}", f"{d['params_m']:g}",
                     f"{d['search_cost_gpu_days']:g}", d["source"]])
    notes = ["Published numbers are for scale only: paper-size networks (C=36, 20 cells, 600 epochs) on the "
             "original CIFAR-10, best of several searches; not comparable with the sizes run here."]
    return Table(f"{info.label}: published CIFAR-10 results (DARTS space)", info.size, header, rows, notes)


def margins(d: dict[str, Any]) -> str:
    """``smallest / median`` margin of a decisiveness record, `` *`` when a choice is within float rounding."""
    if d.get("min_margin") is None:
        return "n/a"
    return f"{d['min_margin']:.2g} / {d['median_margin']:.2g}" + (" *" if d.get("n_within_noise") else "")


def benchmark_tables(info: BenchmarkInfo, runs: list[RunResult]) -> list[Table]:
    """The tables of one benchmark, in report order, as its evaluator makes them (`itnas.evaluators`)."""
    return get_report(info.evaluation).tables(info, runs)
