"""The report's tables, one set per benchmark (`benchmark_tables`), each a `Table` that renders as markdown and HTML.

Per benchmark: a method x metric table (mean ± sample std over seeds, n shown; std only for n >= 2), the
published numbers of ``published.json`` for scale where they exist (`load_published`; NAS-Bench-201 rows for nb201
benchmarks, DARTS-space CIFAR-10 errors for a CIFAR-10 DARTS-space benchmark), and one row per run. Every table
is titled with the benchmark's label and carries the caller's size line.

- train benchmarks: test accuracy (%), parameters (M) of the trained network, the margins of the last search
  epoch's marginal genotype (alpha units), collapse count and collapsed searches;
- nb201 benchmarks: the NAS-Bench-201 test accuracy (%) of the derived cell on CIFAR-10, CIFAR-100 and
  ImageNet16-120 for the marginal and the sequential derivation side by side (details["cells"]), collapsed
  searches (every op of the cell parameter-free: collapse count == 6 edges) and the mean collapse count, and the
  table's best cell for scale (details["table_best"]).

Selection rule (`SELECTION_RULE`): every seed is reported, nothing is selected on test data. Published numbers
are best-of-several searches at paper size: for context only, never compared with this pipeline's numbers.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..derive import NOISE_MARGIN
from ..genotype import DERIVE_MODES, Genotype
from .runs import NB201_DATASETS, BenchmarkInfo, RunResult
from .stats import Stat, method_stats, nb201_value

__all__ = ["CELL_TITLES", "OP_ABBREVIATIONS", "REPRODUCIBILITY", "SELECTION_RULE", "Table", "benchmark_tables",
           "compact_cell", "load_published", "published_kind"]

#: What a rerun reproduces, and what a comparison of methods needs (shown in every report).
REPRODUCIBILITY = (
    "A rerun with the same params is bitwise identical on the same machine type with the same number of threads. "
    "A float64 search (`search.precision.dtype: float64`, the CPU default) also derives the same genotype at "
    "another thread count: on the default Fashion-MNIST search, 1 and 2 threads ended with alphas 6e-16 apart and "
    "identical genotypes for itnas and darts (reports/experiments/thread-check-float64.json); other CPU types were "
    "not measured, but at that level only a margin below ~1e-12 could flip. A float32 search (GPU runs; here the "
    "nb201 and cifar10 benchmarks) reduces in an order that depends on the thread count and the CPU type, and "
    "the differences grow during training: on the CPU defaults 1 and 2 threads ended with alphas up to 0.07 apart "
    "and genotypes that differ in 2-4 of the 8 edges of a cell. The margins column says how decided each genotype "
    "is. One seed ranks nothing: compare methods by the mean ± std over several seeds, and read differences "
    "smaller than that std as noise.")

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


def published_kind(info: BenchmarkInfo) -> str | None:
    """Which published numbers belong beside a benchmark: "nb201" (nb201 evaluation), "cifar10" (a train benchmark
    on CIFAR-10 in the DARTS space), else None."""
    if info.evaluation == "nb201":
        return "nb201"
    if info.dataset == "cifar10" and info.space in (None, "darts"):
        return "cifar10"
    return None


def compact_cell(genotype: Genotype, cell_type: str) -> str:
    """Abbreviated edges ``sep3(0->2) skip(1->2) ...`` ('n/a' when the genotype has no such cell)."""
    edges = getattr(genotype, cell_type)
    if not edges:
        return "n/a"
    return " ".join(f"{OP_ABBREVIATIONS.get(op, op)}({s}->{d})" for op, s, d in edges)


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "n/a" if value is None else f"{float(value):{spec}}"


def _seeds(group: list[RunResult]) -> str:
    return f"{', '.join(str(r.seed) for r in group)} (n={len(group)})"


def _groups(runs: list[RunResult]) -> dict[str, list[RunResult]]:
    out: dict[str, list[RunResult]] = {}
    for r in runs:
        out.setdefault(r.method, []).append(r)
    return out


def _margin_text(s: Stat) -> str:
    return s.text(".2g")


def train_table(info: BenchmarkInfo, runs: list[RunResult]) -> Table:
    """Method x metric for a train benchmark (means over seeds)."""
    header = ["method", "seeds", "test acc (%)", "params (M)", "smallest margin", "median margin",
              "collapse count", "collapsed searches"]
    rows = []
    for method, group in _groups(runs).items():
        s = method_stats(group)
        rows.append([method, _seeds(group), s["test_acc"].text(), s["params_m"].text(".3f"),
                     _margin_text(s["min_margin"]), _margin_text(s["median_margin"]),
                     s["collapse_count"].text(".1f"), f"{s['collapsed']} of {s['n']}"])
    notes = [
        f"Mean ± sample std over seeds (ddof=1); one seed: the value and n=1. Selection rule: {SELECTION_RULE}.",
        ("Test accuracy of the final network trained from scratch, on test images that search, derivation and "
         "training never see. Margins (docs/method.md 2.6; alpha units): for every choice of the last search "
         "epoch's marginal genotype, the gap to the runner-up; the smallest and the median per search, averaged "
         f"over seeds (a choice within float rounding is < {NOISE_MARGIN:g}). Collapse count: parameter-free ops "
         "(skip, pools, none, noise) in the normal cell; a search collapsed when all of them are.")]
    return Table(f"{info.label}: results per method", info.size, header, rows, notes)


def nb201_table(info: BenchmarkInfo, runs: list[RunResult]) -> Table:
    """Method x metric for an nb201 benchmark: each data set's NB201 test accuracy for both derivations."""
    header = ["method", "seeds"]
    for name in NB201_DATASETS.values():
        header += [f"{name} test (%), {mode}" for mode in DERIVE_MODES]
    header += [f"collapsed searches, {mode}" for mode in DERIVE_MODES]
    header += [f"mean collapse count, {mode}" for mode in DERIVE_MODES]
    header += ["smallest margin", "median margin"]
    rows = []
    for method, group in _groups(runs).items():
        s = method_stats(group)
        row = [method, _seeds(group)]
        for metric in NB201_DATASETS:
            row += [s[f"{mode}:{metric}"].text() for mode in DERIVE_MODES]
        row += [f"{s[f'{mode}:collapsed']} of {s[f'{mode}:n_collapsed']}" for mode in DERIVE_MODES]
        row += [s[f"{mode}:collapse_count"].text(".1f") for mode in DERIVE_MODES]
        row += [_margin_text(s["min_margin"]), _margin_text(s["median_margin"])]
        rows.append(row)
    notes = [
        (f"NAS-Bench-201 test accuracy (%) of the derived cell (200-epoch table columns, itnas.nb201), for the "
         f"marginal and the sequential derivation of the same searched supernet; the configured derivation "
         f"({info.derivation}) is the chain's genotype.json. Mean ± sample std over seeds (ddof=1); one seed: the "
         f"value and n=1. Selection rule: every seed is reported; no selection on test data."),
        ("Collapsed search: every op of the derived cell is parameter-free (none, skip, avg pool): collapse count "
         "== 6 edges. Mean collapse count: parameter-free ops among the 6 edges."),
        ("Margins (docs/method.md 2.6; alpha units): for every edge of the last search epoch's marginal cell, the "
         "gap between its op's alpha and the runner-up's; the smallest and the median per search, averaged over "
         f"seeds (a choice within float rounding is < {NOISE_MARGIN:g}).")]
    return Table(f"{info.label}: NAS-Bench-201 look-up per method", info.size, header, rows, notes)


def _table_best(runs: list[RunResult]) -> dict[str, float]:
    """{metric: value (%)} of the NB201 table's best cell per test metric, from the runs' details."""
    for r in runs:
        best = r.details.get("table_best") or {}
        if all(m in best for m in NB201_DATASETS):
            return {m: float(best[m]["value"]) for m in NB201_DATASETS}
    return {}


def nb201_scale_table(info: BenchmarkInfo, runs: list[RunResult]) -> Table:
    """For scale: the NB201 table's best cell per metric (the runs' details) and the published NB201 rows."""
    header = ["reference", *(f"{name} test (%)" for name in NB201_DATASETS.values()), "note", "source"]
    best = _table_best(runs)
    rows = [["best cell of the NB201 table (per metric)", *(_fmt(best.get(m)) for m in NB201_DATASETS),
             "the table's maximum", "NAS-Bench-201 table (itnas.nb201), as looked up by the evaluate stage"]]
    for entry in load_published()["cifar10"]:
        nb = entry["nb201"]
        rows.append([f"{_PUBLISHED_LABEL}: {entry['method']}", *(f"{a:.2f}" for a in nb["test_acc_pct"]),
                     nb.get("note") or "", nb["source"]])
    notes = ["Published numbers are for scale only: paper-size searches (C=16, 5 cells per stage, 50 epochs) "
             "reported as the papers give them; they are not comparable with the CPU-reduced searches above."]
    return Table(f"{info.label}: for scale (NB201 table best and published results)", info.size, header, rows,
                 notes)


def cifar10_published_table(info: BenchmarkInfo) -> Table:
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


def _margins(d: dict[str, Any]) -> str:
    """``smallest / median`` margin of a decisiveness record, `` *`` when a choice is within float rounding."""
    if d.get("min_margin") is None:
        return "n/a"
    return f"{d['min_margin']:.2g} / {d['median_margin']:.2g}" + (" *" if d.get("n_within_noise") else "")


def runs_table(info: BenchmarkInfo, runs: list[RunResult]) -> Table:
    """One row per run (train) or per run and derivation (nb201)."""
    if info.evaluation == "train":
        header = ["method", "seed", "normal cell", "reduction cell", "smallest / median margin", "params (M)",
                  "collapse count", "search time (s)", "test acc (%)"]
        rows = []
        for r in runs:
            rows.append([r.method, str(r.seed), compact_cell(r.genotype, "normal"), compact_cell(r.genotype, "reduce"),
                         _margins(r.decisiveness), _fmt(r.metrics.get("params_m"), ".3f"), str(r.collapse_count),
                         _fmt(r.search_time_s, ".1f"), _fmt(r.test_acc)])
        notes = ["Edges are written op(src->dst) (node ids of docs/method.md 2.1); * = a choice within float "
                 "rounding."]
        return Table(f"{info.label}: every run", info.size, header, rows, notes, code_columns=(2, 3))
    header = ["method", "seed", "derivation", "cell", "collapse count",
              *(f"{name} test (%)" for name in NB201_DATASETS.values()), "smallest / median margin",
              "search time (s)"]
    rows = []
    for r in runs:
        margins = _margins(r.decisiveness)
        for mode in DERIVE_MODES:
            cell = r.nb201_cell(mode)
            if cell is None:
                continue
            mark = " (genotype.json)" if mode == r.derivation else ""
            values = [_fmt(nb201_value(r, mode, m)) for m in NB201_DATASETS]
            first = mode == DERIVE_MODES[0]  # margins and time belong to the search (the marginal cell's choices)
            rows.append([r.method, str(r.seed), mode + mark, str(cell.get("arch", "n/a")),
                         str(cell.get("collapse_count", "n/a")), *values, margins if first else "",
                         _fmt(r.search_time_s, ".0f") if first else ""])
    notes = ["Margins: of the search's marginal cell (alpha units); * = a choice within float rounding."]
    return Table(f"{info.label}: every run", info.size, header, rows, notes, code_columns=(3,))


def benchmark_tables(info: BenchmarkInfo, runs: list[RunResult]) -> list[Table]:
    """The tables of one benchmark, in report order: per method, for scale / published (where any), every run."""
    if info.evaluation == "nb201":
        return [nb201_table(info, runs), nb201_scale_table(info, runs), runs_table(info, runs)]
    tables = [train_table(info, runs)]
    if published_kind(info) == "cifar10":
        tables.append(cifar10_published_table(info))
    else:
        tables[0].notes.append(f"No published numbers are shown beside {info.label}: the published DARTS-family "
                               "results are for CIFAR-10 (DARTS space) and NAS-Bench-201 at paper size.")
    return [*tables, runs_table(info, runs)]
