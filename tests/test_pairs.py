"""Pairwise comparison over seeds (`itnas.report.pairs`): Welch's interval and the Mann-Whitney U test against
scipy on fixed inputs and against hand-computed values, intervals that must contain / exclude 0 on constructed
data, and the plain sentence of each case."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from itnas.report.pairs import PairComparison, compare_pair, rank_test, smallest_p, welch_interval

A = [93.1, 92.5, 94.0, 91.8, 93.6]
B = [54.3, 90.2, 88.1, 54.3, 91.0]


def test_welch_interval_equals_scipy_and_the_formula():
    d, lo, hi, df = welch_interval(A, B)
    ci = stats.ttest_ind(A, B, equal_var=False).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((ci.low, ci.high), rel=1e-12)
    va, vb = statistics.variance(A) / 5, statistics.variance(B) / 5
    assert d == pytest.approx(statistics.fmean(A) - statistics.fmean(B)) and d == pytest.approx(17.42)
    assert df == pytest.approx((va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 4))
    assert hi - d == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(va + vb))
    assert lo < 0 < hi  # one collapsed seed pair widens the interval across 0
    ci90 = stats.ttest_ind(A, B, equal_var=False).confidence_interval(0.90)
    assert welch_interval(A, B, 0.90)[1:3] == pytest.approx((ci90.low, ci90.high), rel=1e-12)


def test_welch_interval_of_separated_and_of_overlapping_samples():
    _, lo, hi, _ = welch_interval([90, 91, 92, 93, 94], [80, 81, 82, 83, 84])
    assert lo > 0  # 10 points apart, std 1.6 each: excludes 0
    _, lo, hi, _ = welch_interval([1, 2, 3], [1.5, 2.5, 3.5])
    assert lo < 0 < hi  # shifted by half a std: includes 0
    assert welch_interval([2, 2], [1, 1]) == (1.0, 1.0, 1.0, None)  # no spread: the point difference


@pytest.mark.parametrize("a,b", [([1.0], [1.0, 2.0]), ([1.0, 2.0], [])])
def test_welch_interval_needs_two_values_per_sample(a, b):
    with pytest.raises(ValueError, match=rf"at least 2 values per sample, got n={len(a)} and n={len(b)}"):
        welch_interval(a, b)


def test_rank_test_equals_scipy_exact_and_counts_pairs():
    u, p, method = rank_test([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert (u, method) == (0.0, "exact") and p == pytest.approx(2 / 252) == pytest.approx(smallest_p(5, 5))
    u, p, _ = rank_test(A, B)  # ties (54.3 twice in B, none across): U counts pairs with a > b
    assert u == sum((x > y) + 0.5 * (x == y) for x in A for y in B) == 25.0
    assert p == pytest.approx(2 / 252)  # every itnas seed beats every other seed: the smallest p at 5 vs 5
    u, p, method = rank_test([1, 2, 2, 4, 5], [2, 7, 8, 9, 10])  # ties across the samples
    ref = stats.mannwhitneyu([1, 2, 2, 4, 5], [2, 7, 8, 9, 10], alternative="two-sided",
                             method=stats.PermutationMethod(n_resamples=math.inf))
    assert (u, p, method) == (3.0, pytest.approx(ref.pvalue), "exact") and p == pytest.approx(0.0556, abs=1e-4)
    xs, ys = list(range(10)), [v + 0.5 for v in range(10)]  # 10 vs 10: C(20, 10) splits, normal approximation
    u, p, method = rank_test(xs, ys)
    ref = stats.mannwhitneyu(xs, ys, alternative="two-sided", method="asymptotic")
    assert (u, method) == (45.0, "asymptotic") and p == pytest.approx(ref.pvalue)


def test_rank_test_needs_two_values_per_sample():
    with pytest.raises(ValueError, match=r"at least 2 values per sample, got n=1 and n=3"):
        rank_test([1.0], [1.0, 2.0, 3.0])


def test_smallest_p():
    assert smallest_p(3, 3) == pytest.approx(0.1) and smallest_p(5, 5) == pytest.approx(2 / 252)
    assert smallest_p(1, 1) == 1.0


def test_readings():
    shown = compare_pair("CIFAR-10", "itnas", "darts", [90, 91, 92, 93, 94], [80, 81, 82, 83, 84])
    assert shown.ci_excludes_zero() and shown.p < 0.05
    assert shown.reading().startswith("itnas is higher by 10.00 points (95 % interval [")
    assert "a difference is shown at n=5 vs 5" in shown.reading()

    none = compare_pair("CIFAR-10", "itnas", "darts", [1, 2, 3], [1.5, 2.5, 3.5])
    assert not none.ci_excludes_zero()
    assert "includes 0 and the rank test does not reject" in none.reading()
    assert "no difference shown at n=3 vs 3" in none.reading()
    assert "cannot reach p < 0.05 (smallest p 0.1)" in none.reading()
    # the interval's own ends, signed: an asymmetric interval does not exclude -13.7 (review defect 10)
    wide = PairComparison("CIFAR-10", "itnas", "darts", (1.0, 2.0, 3.0), (1.0, 2.0, 3.0), 4.0, (-5.73, 13.73), 3.1,
                          5.0, 0.7, "exact")
    assert wide.reading() == ("the 95 % interval [-5.73, 13.73] includes 0 and the rank test does not reject (p=0.7); "
                              "at this n the rank test cannot reach p < 0.05 (smallest p 0.1): no difference shown at "
                              "n=3 vs 3; differences from -5.7 to +13.7 points are not excluded")

    ranks = compare_pair("CIFAR-10", "itnas", "darts", A, B)  # every seed higher, but two collapses widen the CI
    assert ranks.p < 0.05 and not ranks.ci_excludes_zero()
    assert "the rank test rejects" in ranks.reading() and "not pinned down at n=5 vs 5" in ranks.reading()

    few = compare_pair("CIFAR-10", "itnas", "darts", [90.0, None], [80.0, 81.0])  # None: a run without the metric
    assert few.n == (1, 2) and few.ci is None and few.diff == pytest.approx(9.5)
    assert few.p is None
    assert few.reading() == ("at n=1 vs 2: too few seeds for an interval or a rank test (at least 2 per method "
                             "needed); nothing can be said about a difference")

    flat = compare_pair("CIFAR-10", "itnas", "darts", [54.3, 54.3], [54.3, 54.3])
    assert flat.reading() == "at n=2 vs 2: every seed of both methods gives the same value: no difference"
    apart = compare_pair("CIFAR-10", "itnas", "darts", [60.0, 60.0], [54.3, 54.3])
    assert "every seed of itnas gives 5.70 points higher than every seed of darts" in apart.reading()
