"""Pairwise comparison of two methods over seeds: the difference of the means with Welch's t interval, and a
two-sided Mann-Whitney U rank test (`compare_pair` -> `PairComparison`), with one plain sentence on what the data
do and do not support (`PairComparison.reading`).

The seeds of two methods are treated as unpaired, independent samples: a search's seed fixes the initialisation
and the data order of that method's search only, so seed k of one method shares nothing with seed k of another
that would pair them. Nothing is corrected for multiple comparisons (a report compares several pairs on several
metrics): a single p below 0.05 among many is weak evidence.

- Welch's interval (Welch 1947): d = mean(a) - mean(b), se = sqrt(s_a^2/n_a + s_b^2/n_b) (sample variances,
  ddof=1), Welch-Satterthwaite degrees of freedom df = se^4 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1)),
  interval d ± t_{(1+level)/2, df} se (`welch_interval`; equals `scipy.stats.ttest_ind(a, b, equal_var=False)
  .confidence_interval(level)`). It needs n >= 2 per method; with no spread in either method (se = 0) it is the
  point d.
- Mann-Whitney U (Mann & Whitney 1947; `scipy.stats.mannwhitneyu`, two-sided): U of `a` = the number of pairs
  (x in a, y in b) with x > y, ties counted 1/2. The p value is exact (every split of the pooled values into groups
  of n_a and n_b enumerated, ties included: a permutation test of U) for at most `EXACT_SPLITS` splits (up to 8 vs
  8 seeds), the normal approximation with tie correction otherwise (`rank_test`). With small n the test cannot
  reach small p at all: its smallest two-sided p is 2 / C(n_a + n_b, n_a) (0.1 at 3 vs 3, 0.0079 at 5 vs 5;
  `smallest_p`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PairComparison", "compare_pair", "rank_test", "smallest_p", "welch_interval"]

#: Largest number of splits C(n_a + n_b, n_a) the rank test enumerates (exact p; 8 vs 8 seeds: 12,870).
EXACT_SPLITS = 20_000

#: Significance level of the plain sentences (two-sided) and the default interval level (1 - ALPHA).
ALPHA = 0.05


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 1 - ALPHA
                   ) -> tuple[float, float, float, float | None]:
    """(d, low, high, df): mean(a) - mean(b) and Welch's `level` confidence interval of it (module docstring); df
    None when neither sample varies (the interval is then the point d). Raises ValueError when a sample has fewer
    than 2 values or `level` is not in (0, 1)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's interval needs at least 2 values per sample, got n={len(a)} and n={len(b)}")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must be in (0, 1)")
    d = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d, d, None
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf((1 + level) / 2, df)) * se
    return d, d - half, d + half, df


def rank_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, str]:
    """(U of `a`, two-sided p, method "exact" | "asymptotic") of the Mann-Whitney U test (module docstring). Raises
    ValueError when a sample has fewer than 2 values (one value per method cannot reach p < 0.67)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"the rank test needs at least 2 values per sample, got n={len(a)} and n={len(b)}")
    if math.comb(len(a) + len(b), len(a)) <= EXACT_SPLITS:  # every split of the pooled values into two groups
        res = stats.mannwhitneyu(a, b, alternative="two-sided",
                                 method=stats.PermutationMethod(n_resamples=math.inf))
        return float(res.statistic), float(res.pvalue), "exact"
    res = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
    return float(res.statistic), float(res.pvalue), "asymptotic"


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p the exact Mann-Whitney test can give for samples of n_a and n_b values (no ties):
    2 / C(n_a + n_b, n_a), at most 1."""
    return min(1.0, 2 / math.comb(n_a + n_b, n_a))


@dataclass(frozen=True)
class PairComparison:
    """`reference` vs `other` on one metric, over seeds (module docstring).

    Attributes:
        metric: what was compared (its label, e.g. "CIFAR-10 test (%)"). reference / other: method names.
        a / b: the values of `reference` / `other`, one per seed. unit: of a difference ("points").
        diff: mean(a) - mean(b) (None when a sample is empty). ci: Welch's `level` interval (None for n < 2 in a
        sample); df: its degrees of freedom (None: no spread, or no interval). u / p / test: Mann-Whitney U of `a`,
        two-sided p and "exact" | "asymptotic" (None for n < 2 in a sample). collapsed_a / collapsed_b: searches whose
        derived cell collapsed (all parameter-free), None when not known.
    """

    metric: str
    reference: str
    other: str
    a: tuple[float, ...]
    b: tuple[float, ...]
    diff: float | None
    ci: tuple[float, float] | None
    df: float | None
    u: float | None
    p: float | None
    test: str | None
    level: float = 1 - ALPHA
    unit: str = "points"
    collapsed_a: int | None = None
    collapsed_b: int | None = None

    @property
    def n(self) -> tuple[int, int]:
        return len(self.a), len(self.b)

    def ci_excludes_zero(self) -> bool | None:
        """Whether the interval lies on one side of 0 (None without an interval)."""
        return None if self.ci is None else (self.ci[0] > 0 or self.ci[1] < 0)

    def reading(self) -> str:
        """One plain sentence: what these seeds do and do not support about `reference` vs `other` (for the
        significance level `ALPHA`, two-sided, uncorrected for multiple comparisons)."""
        na, nb = self.n
        ref, oth, unit = self.reference, self.other, self.unit
        at = f"at n={na} vs {nb}"
        if self.diff is None or self.ci is None or self.p is None:
            return (f"{at}: too few seeds for an interval or a rank test (at least 2 per method needed); nothing "
                    "can be said about a difference")
        lo, hi = self.ci
        pct = f"{100 * self.level:g} %"
        floor = smallest_p(na, nb)
        no_power = (f"; at this n the rank test cannot reach p < {ALPHA:g} (smallest p {floor:.2g})"
                    if floor >= ALPHA else "")
        side = "higher" if self.diff > 0 else "lower"
        if self.df is None:  # no spread within either method
            if self.diff == 0:
                return f"{at}: every seed of both methods gives the same value: no difference"
            return (f"{at}: every seed of {ref} gives {abs(self.diff):.2f} {unit} {side} than every seed of {oth} "
                    f"(no spread within either method; rank test p={self.p:.2g}){no_power}")
        rejects = self.p < ALPHA
        if self.ci_excludes_zero() and rejects:
            return (f"{ref} is {side} by {abs(self.diff):.2f} {unit} ({pct} interval [{lo:.2f}, {hi:.2f}] excludes "
                    f"0; rank test p={self.p:.2g}): a difference is shown {at} (uncorrected for the other "
                    "comparisons)")
        if self.ci_excludes_zero():
            return (f"the {pct} interval [{lo:.2f}, {hi:.2f}] excludes 0 ({ref} {side} by {abs(self.diff):.2f} "
                    f"{unit}) but the rank test does not reject (p={self.p:.2g}){no_power}: weak evidence of a "
                    f"difference {at}")
        if rejects:
            return (f"the rank test rejects (p={self.p:.2g}), but the {pct} interval [{lo:.2f}, {hi:.2f}] includes "
                    f"0: the seeds rank {ref} {side}, the size of the difference is not pinned down {at}")
        return (f"the {pct} interval [{lo:.2f}, {hi:.2f}] includes 0 and the rank test does not reject "
                f"(p={self.p:.2g}){no_power}: no difference shown {at}; differences from {lo:+.1f} to {hi:+.1f} {unit} "
                "are not excluded")


def compare_pair(metric: str, reference: str, other: str, a: Sequence[float | None], b: Sequence[float | None],
                 level: float = 1 - ALPHA, unit: str = "points", collapsed_a: int | None = None,
                 collapsed_b: int | None = None) -> PairComparison:
    """`PairComparison` of the values `a` (method `reference`) and `b` (method `other`), one per seed; None values
    (runs without the metric) are left out."""
    xa = tuple(float(v) for v in a if v is not None)
    xb = tuple(float(v) for v in b if v is not None)
    diff = statistics.fmean(xa) - statistics.fmean(xb) if xa and xb else None
    ci = df = None
    if len(xa) >= 2 and len(xb) >= 2:
        diff, lo, hi, df = welch_interval(xa, xb, level)
        ci = (lo, hi)
    u = p = test = None
    if len(xa) >= 2 and len(xb) >= 2:
        u, p, test = rank_test(xa, xb)
    return PairComparison(metric, reference, other, xa, xb, diff, ci, df, u, p, test, level, unit, collapsed_a,
                          collapsed_b)
