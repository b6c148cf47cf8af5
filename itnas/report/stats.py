"""Statistics over the seeds of a method: mean, sample standard deviation (ddof=1) and n (`Stat`), per benchmark
and method (`method_stats`), and the small metrics file that `dvc exp show` compares (`summary_metrics`).

Every seed is reported; nothing is selected on test data. The std is the sample standard deviation over seeds
(ddof=1), given only for n >= 2.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..genotype import DERIVE_MODES
from .runs import NB201_DATASETS, RunResult

__all__ = ["Stat", "group_runs", "method_stats", "nb201_value", "stat", "summary_metrics"]


@dataclass(frozen=True)
class Stat:
    """Mean and sample std (ddof=1; None for n < 2) of n values; mean None when n = 0."""

    mean: float | None
    std: float | None
    n: int

    def text(self, fmt: str = ".2f") -> str:
        """``mean ± std`` (n >= 2), ``mean (n=1)``, or ``n/a`` (no value); numbers formatted with `fmt`."""
        if self.mean is None:
            return "n/a"
        if self.std is None:
            return f"{self.mean:{fmt}} (n=1)"
        return f"{self.mean:{fmt}} ± {self.std:{fmt}}"

    def rounded(self, digits: int = 2) -> dict[str, Any]:
        """{"mean", "std", "n"} rounded to `digits` decimals (JSON-ready; std None for n < 2)."""
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, digits)
        return {"mean": r(self.mean), "std": r(self.std), "n": self.n}


def stat(values: Iterable[float | None]) -> Stat:
    """`Stat` of the values that are not None."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return Stat(None, None, 0)
    return Stat(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


def group_runs(runs: list[RunResult]) -> dict[str, dict[str, list[RunResult]]]:
    """{benchmark: {method: runs}}, benchmarks and methods in order of first appearance."""
    out: dict[str, dict[str, list[RunResult]]] = {}
    for r in runs:
        out.setdefault(r.benchmark, {}).setdefault(r.method, []).append(r)
    return out


def nb201_value(run: RunResult, mode: str, metric: str) -> float | None:
    """The NB201 look-up `metric` (%) of the run's cell derived with rule `mode`, None when not recorded."""
    cell = run.nb201_cell(mode) or {}
    value = cell.get(metric)
    return None if value is None else float(value)


def _nb201_collapse(run: RunResult, mode: str) -> int | None:
    cell = run.nb201_cell(mode)
    return None if cell is None or cell.get("collapse_count") is None else int(cell["collapse_count"])


def method_stats(group: list[RunResult]) -> dict[str, Any]:
    """Statistics of one method's runs (one benchmark) over seeds.

    Keys (train): test_acc (%), params_m (M), min_margin / median_margin (alpha units; the last search epoch's
    decisiveness record), collapse_count (`Stat`), collapsed (number of collapsed searches, int), n (runs).
    Keys (both): min_margin / median_margin. Keys (nb201), for mode in marginal / sequential: ``<mode>:<metric>``
    for every NB201 test metric (%),
    ``<mode>:collapse_count`` (`Stat`), ``<mode>:collapsed`` (int, searches whose cell is all parameter-free,
    collapse count == 6 edges), ``<mode>:n_collapsed`` (runs with a recorded cell of that mode); n.
    """
    out: dict[str, Any] = {"n": len(group)}
    out["min_margin"] = stat(r.decisiveness.get("min_margin") for r in group)
    out["median_margin"] = stat(r.decisiveness.get("median_margin") for r in group)
    if group[0].evaluation == "train":
        out["test_acc"] = stat(r.test_acc for r in group)
        out["params_m"] = stat(r.metrics.get("params_m") for r in group)
        out["collapse_count"] = stat(r.collapse_count for r in group)
        out["collapsed"] = sum(r.collapsed() for r in group)
        return out
    for mode in DERIVE_MODES:
        for metric in NB201_DATASETS:
            out[f"{mode}:{metric}"] = stat(nb201_value(r, mode, metric) for r in group)
        counts = [(r, _nb201_collapse(r, mode)) for r in group]
        known = [(r, c) for r, c in counts if c is not None]
        out[f"{mode}:collapse_count"] = stat(c for _, c in known)
        out[f"{mode}:collapsed"] = sum(r.collapsed(c) for r, c in known)
        out[f"{mode}:n_collapsed"] = len(known)
    return out


def summary_metrics(runs: list[RunResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """The report's metrics file (reports/summary.json, what `dvc exp show` compares), small and flat:
    {benchmark: {method: {metric: {"mean", "std", "n"}}}}, accuracies in % rounded to 2 decimals, std null for
    one seed.

    Metrics: train: ``test_acc``; nb201: ``nb201_c10_test``, ``nb201_c100_test``, ``nb201_in16_test`` of the
    configured derivation (each run's genotype.json) and ``seq_nb201_*`` of the sequential derivation. Both:
    ``collapsed`` = {"count": searches whose derived cell is all parameter-free, "n": runs}; nb201 also
    ``seq_collapsed``.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for benchmark, methods in group_runs(runs).items():
        out[benchmark] = {}
        for method, group in methods.items():
            row: dict[str, Any] = {}
            if group[0].evaluation == "train":
                row["test_acc"] = stat(r.test_acc for r in group).rounded()
            else:
                for metric in NB201_DATASETS:
                    row[metric] = stat(nb201_value(r, r.derivation, metric) for r in group).rounded()
                for metric in NB201_DATASETS:
                    row[f"seq_{metric}"] = stat(nb201_value(r, "sequential", metric) for r in group).rounded()
                seq = [(r, _nb201_collapse(r, "sequential")) for r in group]
                seq = [(r, c) for r, c in seq if c is not None]
                row["seq_collapsed"] = {"count": sum(r.collapsed(c) for r, c in seq), "n": len(seq)}
            row["collapsed"] = {"count": sum(r.collapsed() for r in group), "n": len(group)}
            out[benchmark][method] = row
    return out
