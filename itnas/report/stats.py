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

from ..evaluators.reports import get_report
from .runs import RunResult

__all__ = ["Stat", "group_runs", "margin_stats", "method_stats", "stat", "summary_metrics"]


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


def margin_stats(group: list[RunResult]) -> dict[str, Any]:
    """n (runs) and the `Stat` of min_margin / median_margin (alpha units; the last search epoch's decisiveness
    record) over one method's runs: the statistics every evaluator's tables start with."""
    return {"n": len(group), "min_margin": stat(r.decisiveness.get("min_margin") for r in group),
            "median_margin": stat(r.decisiveness.get("median_margin") for r in group)}


def method_stats(group: list[RunResult]) -> dict[str, Any]:
    """Statistics of one method's runs (one benchmark) over seeds, as their evaluator computes them
    (`itnas.evaluators.Evaluator.method_stats`; e.g. test_acc, or ``<mode>:<metric>`` of an NB201 look-up)."""
    return get_report(group[0].evaluation).method_stats(group)


def summary_metrics(runs: list[RunResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """The report's metrics file (reports/summary.json, what `dvc exp show` compares), small and flat:
    {benchmark: {method: {metric: {"mean", "std", "n"}}}}, accuracies in % rounded to 2 decimals, std null for
    one seed; the metrics of each evaluator's `summary` (train: ``test_acc``; nb201: ``nb201_*_test`` of the
    configured derivation and ``seq_nb201_*`` of the sequential one), and ``collapsed`` = {"count": searches whose
    derived cell is all parameter-free, "n": runs}.
    """
    return {benchmark: {method: get_report(group[0].evaluation).summary(group)
                        for method, group in methods.items()}
            for benchmark, methods in group_runs(runs).items()}
