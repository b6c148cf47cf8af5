"""Statistics over seeds and the markdown report: one row per run, mean ± sample std per method, genotypes and the
published numbers (`published.json`, loaded by `load_published`) for context.

Selection rule (`SELECTION_RULE`): every seed is reported, nothing is selected on test data, and the model of
the last training epoch is evaluated once. Published DARTS-family numbers are best-of-several
searches on CIFAR-10; they are shown for context only, never compared with this pipeline's numbers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..derive import NOISE_MARGIN
from ..genotype import Genotype
from .runs import RunResult

__all__ = ["CELL_TITLES", "OP_ABBREVIATIONS", "SELECTION_RULE", "MethodSummary", "ablation_table", "load_published",
           "method_summary", "write_markdown"]

log = logging.getLogger(__name__)

#: What a rerun reproduces, and what a comparison of methods needs (shown in every report).
REPRODUCIBILITY = (
    "A rerun with the same params is bitwise identical on the same machine type with the same number of threads. "
    "Across CPU types (or thread counts) float reductions run in another order: the numbers differ in the last "
    "bits, those differences grow during training, and a genotype whose smallest margin is small can change "
    "(the margins column says how decided each genotype is). Measured on the CPU defaults: the same search at 1 "
    "and at 2 threads ends with alphas up to 0.07 apart and genotypes that differ in 2-4 of the 8 edges of a cell, "
    "so margins below that are not reproducible across thread counts or CPU types. One seed ranks nothing: "
    "compare methods by the mean ± std over several seeds, and read differences smaller than that std as noise.")

SELECTION_RULE = ("every seed is reported; no selection on test data; "
                  "the model of the last training epoch is evaluated once")

#: Short op names for tables and small plots.
OP_ABBREVIATIONS = {"none": "none", "max_pool_3x3": "max3", "avg_pool_3x3": "avg3", "skip_connect": "skip",
                    "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3", "dil_conv_5x5": "dil5",
                    "nor_conv_1x1": "conv1", "nor_conv_3x3": "conv3", "noise": "noise"}

#: Cell type -> its name in titles.
CELL_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}


@dataclass
class MethodSummary:
    """Test accuracy over the seeds of one method.

    Attributes:
        method: method name. seeds: the seeds, in run order. n: number of seeds.
        test_acc_mean: mean test accuracy (%). test_acc_std: sample standard deviation (%, ddof=1), None when n=1.
        search_time_s_mean: mean search wall time (s), None when no run has one.
        collapse_mean: mean collapse count (parameter-free ops in the normal cell).
    """

    method: str
    seeds: list[int]
    n: int
    test_acc_mean: float
    test_acc_std: float | None
    search_time_s_mean: float | None
    collapse_mean: float


def method_summary(runs: list[RunResult]) -> list[MethodSummary]:
    """One `MethodSummary` per method, methods in order of first appearance in `runs`."""
    out = []
    for method in dict.fromkeys(r.method for r in runs):
        group = [r for r in runs if r.method == method]
        acc = np.array([r.test_acc for r in group], dtype=float)
        times = [r.search_time_s for r in group if r.search_time_s is not None]
        out.append(MethodSummary(
            method=method, seeds=[r.seed for r in group], n=len(group), test_acc_mean=float(acc.mean()),
            test_acc_std=float(acc.std(ddof=1)) if len(group) > 1 else None,
            search_time_s_mean=float(np.mean(times)) if times else None,
            collapse_mean=float(np.mean([r.collapse_count for r in group]))))
    return out


def load_published() -> dict[str, Any]:
    """The published numbers of ``published.json`` (next to this module): each with its source (paper, table).

    Keys: ``cifar10`` (one entry per method: ``darts_space`` test error (%) ± std, params (M), search cost
    (GPU-days), or null; ``nb201`` test accuracy (%) on CIFAR-10 / CIFAR-100 / ImageNet16-120 and a note),
    ``imagenet`` (top-1 error (%) per method), ``about`` and ``units``.
    """
    return json.loads(resources.files(__package__).joinpath("published.json").read_text(encoding="utf-8"))


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{float(value):.{digits}f}"


def _acc_mean_std(s: MethodSummary) -> str:
    """``mean ± std (n=N)``, or ``mean (n=1)`` for a single seed."""
    if s.test_acc_std is None:
        return f"{s.test_acc_mean:.2f} (n=1)"
    return f"{s.test_acc_mean:.2f} ± {s.test_acc_std:.2f} (n={s.n})"


def _compact_cell(genotype: Genotype, cell_type: str) -> str:
    """Abbreviated edges ``sep3(0->2) skip(1->2) ...`` ('n/a' when the genotype has no such cell)."""
    edges = getattr(genotype, cell_type)
    if not edges:
        return "n/a"
    return "`" + " ".join(f"{OP_ABBREVIATIONS.get(op, op)}({s}->{d})" for op, s, d in edges) + "`"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _margins(d: dict[str, Any]) -> str:
    """'smallest / median' margin (alpha units, 2 significant digits); bold when any choice is within noise."""
    if d.get("min_margin") is None:
        return "–"
    text = f"{d['min_margin']:.2g} / {d['median_margin']:.2g}"
    return f"**{text}**" if d.get("n_within_noise") else text


def ablation_table(runs: list[RunResult]) -> str:
    """Markdown: one row per run (method, seed), then a per-method summary and the selection rule.

    Per-run columns: method, seed, normal and reduction cell (abbreviated edges), params (M) of the trained
    network, params (M) at the paper size (C=36, 20 cells), multiply-adds (M) of the trained network on its input
    size and at the paper size on 32x32, collapse count, search time (s), test accuracy (%).
    Summary columns: test accuracy mean ± sample std (ddof=1; "n=1" and no std for one seed), mean search time
    (s), mean collapse count.
    """
    header = ["method", "seed", "normal cell", "reduction cell", "smallest / median margin (marginal)", "largest alpha",
              "params (M)", "params (M), C=36 20 cells", "mult-adds (M)", "mult-adds (M), C=36 20 cells 32x32",
              "collapse count", "search time (s)", "test acc (%)"]
    rows = []
    for r in runs:
        m, d = r.metrics, r.decisiveness
        rows.append([r.method, str(r.seed), _compact_cell(r.genotype, "normal"), _compact_cell(r.genotype, "reduce"),
                     _margins(d), _fmt(d.get("max_alpha"), 3),
                     _fmt(m.get("params_m"), 3), _fmt(m.get("params_m_c36_l20"), 2), _fmt(m.get("madds_m"), 1),
                     _fmt(m.get("madds_m_c36_l20_32px"), 1), str(r.collapse_count), _fmt(r.search_time_s, 1),
                     _fmt(r.test_acc, 2)])
    summary_rows = [[s.method, ", ".join(map(str, s.seeds)), _acc_mean_std(s), _fmt(s.search_time_s_mean, 1),
                     f"{s.collapse_mean:.2f}"] for s in method_summary(runs)]
    used = sorted({op for r in runs for t in ("normal", "reduce") for op, _, _ in getattr(r.genotype, t)})
    legend = ", ".join(f"{OP_ABBREVIATIONS.get(op, op)} = {op}" for op in used)
    return "\n".join([
        "### Every run", "", _md_table(header, rows), "",
        (f"Ops: {legend}. Edges are written op(src->dst); node ids as in docs/method.md 2.1. Collapse count = "
        "parameter-free ops (skip, pools, none, noise) in the normal cell."), "",
        ("Margins (docs/method.md 2.6): for every choice of the last search epoch's marginal genotype (each kept op, "
         "each node's kept edges) the gap in alpha to the runner-up; the smallest and the median are shown, "
         f"**bold** when a choice is within float rounding (< {NOISE_MARGIN:g}). Larger margins are not "
         "reproducible across CPU types and thread counts either when they are below the trajectory noise (see "
         "Reproducibility). Uniform alphas are 1/K "
         "(0.125 for the 8 DARTS ops)."), "",
        "### Per method (over seeds)", "",
        _md_table(["method", "seeds", "test acc (%) mean ± std", "mean search time (s)", "mean collapse count"],
                  summary_rows), "",
        f"Selection rule: {SELECTION_RULE}. The std is the sample standard deviation over seeds (ddof=1).",
    ])


def _published_rows(published: dict[str, Any]) -> list[list[str]]:
    """One row per method: name, CIFAR-10 error ± std (%), params (M), search cost (GPU-days), NB201 accuracies."""
    rows = []
    for entry in published["cifar10"]:
        d = entry["darts_space"]
        cifar = (["–", "–", "–"] if d is None else
                 [f"{d['test_error_pct']:.2f} ± {d['test_error_std_pct']:.2f}", f"{d['params_m']:g}",
                  f"{d['search_cost_gpu_days']:g}"])
        nb = entry["nb201"]
        accs = " / ".join(f"{a:.2f}" for a in nb["test_acc_pct"]) + (f" ({nb['note']})" if nb.get("note") else "")
        rows.append([entry["method"], *cifar, accs])
    return rows


def _published_table(dataset: str) -> str:
    published = load_published()
    header = ["method", "CIFAR-10 test error (%)", "params (M)", "search cost (GPU-days)",
              "NB201 test acc (%) C10 / C100 / IN16-120"]
    imagenet = ", ".join(f"{e['method']} {e['top1_error_pct']:g}" for e in published["imagenet"])
    return "\n".join([
        (f"Published **CIFAR-10** numbers, for context only: they are CIFAR-10 / NAS-Bench-201 "
        f"results of paper-size networks (C=36, 20 cells, 600 epochs), best of several searches, and are "
        f"**not comparable** with the {dataset} numbers above."), "",
        _md_table(header, _published_rows(published)), "", f"ImageNet top-1 error (%): {imagenet}."])


def write_markdown(runs: list[RunResult], path: Path, context: dict[str, Any]) -> None:
    """Write the full markdown report.

    Args:
        runs: the runs, in report order.
        path: output file (its folder is created).
        context: what was run. Keys: ``dataset`` (name), ``test_images`` (number of test images), ``commands``
            (list of command lines); optional ``title``, ``settings`` (label -> description) and
            ``html_name`` (the HTML report's file name, default ``report.html``).
    """
    path = Path(path)
    dataset = str(context.get("dataset", "unknown data set"))
    test_images = context.get("test_images")
    html_name = context.get("html_name", "report.html")
    methods = list(dict.fromkeys(r.method for r in runs))
    seeds = list(dict.fromkeys(r.seed for r in runs))
    lines = [f"# {context.get('title', 'ITNAS ablation report')}", "", "## What was run", "",
             (f"- data set: {dataset}; test accuracy on {test_images if test_images is not None else 'n/a'} test "
             "images that search, derivation and training never see"),
             f"- runs: {len(runs)} (methods {', '.join(methods)} x seeds {', '.join(map(str, seeds))})"]
    for label, text in (context.get("settings") or {}).items():
        lines.append(f"- {label}: {text}")
    commands = context.get("commands") or []
    if commands:
        lines += ["- commands:", "", "  ```", *[f"  {c}" for c in commands], "  ```"]
    lines += ["", "## Reproducibility", "", REPRODUCIBILITY, "",
              "## Results", "", ablation_table(runs), "", "## Genotypes", ""]
    for r in runs:
        lines.append(f"### {r.name} (test acc {r.test_acc:.2f} %, collapse count {r.collapse_count})")
        lines.append("")
        for t in ("normal", "reduce"):
            if getattr(r.genotype, t):
                lines.append(f"- {CELL_TITLES[t]}: `{r.genotype.cell_string(t)}`")
        lines += [f"- JSON: `{json.dumps(r.genotype.to_dict(), separators=(',', ':'))}`", ""]
    lines += ["## Published numbers (CIFAR-10, for context)", "", _published_table(dataset), "",
              "## Figures", "",
              (f"Interactive figures: [{html_name}]({html_name}) (one self-contained page): test accuracy per run "
              "and per method, every genotype drawn as a cell graph, alpha heatmaps with an epoch slider and the "
              "mean alpha entropy per epoch, the learned transition matrices and attention weights of the last "
              "search epoch (ITNAS variants only), and the collapse count per search epoch."), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    log.info("wrote %s (%d runs)", path, len(runs))
