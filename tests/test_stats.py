"""results/stats.py checked against scipy.stats on the same numbers, and against hand-derived
cases where scipy has no counterpart (Holm, the bootstrap's exact shortcut)."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as st

from results import stats


def test_paired_t_matches_scipy_ttest_rel():
    rng = np.random.default_rng(1)
    for n in (2, 3, 5, 11):
        a = rng.normal(75, 2, n)
        b = a - rng.normal(0.5, 1, n)
        got = stats.paired_t(a, b)
        ref = st.ttest_rel(a, b)
        assert got.p == pytest.approx(ref.pvalue, rel=1e-10)
        assert got.detail["t"] == pytest.approx(ref.statistic, rel=1e-10)
        lo, hi = ref.confidence_interval(0.95)
        assert got.ci == pytest.approx((lo, hi), rel=1e-10)
        assert got.estimate == pytest.approx(np.mean(a - b))


def test_paired_t_no_spread_and_one_seed():
    same = stats.paired_t([70.0, 71.0, 72.0], [70.0, 71.0, 72.0])
    assert same.p == 1.0 and same.estimate == 0
    shifted = stats.paired_t([71.0, 72.0, 73.0], [70.0, 71.0, 72.0])
    assert shifted.p == 0.0 and "no spread" in shifted.note
    one = stats.paired_t([71.0], [70.0])
    assert math.isnan(one.p) and one.ci is None


def test_mean_ci_matches_scipy_t_interval():
    v = [61.2, 62.9, 60.4, 63.0]
    lo, hi = st.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=st.sem(v))
    assert stats.mean_ci(v) == pytest.approx((lo, hi), rel=1e-12)
    assert stats.mean_ci([1.0]) is None


@pytest.mark.parametrize("k,n", [(0, 0), (0, 1), (3, 10), (5, 10), (9, 10), (12, 40),
                                 (200, 430), (1, 60)])
def test_binomial_two_sided_matches_scipy_binomtest(k, n):
    ref = 1.0 if n == 0 else st.binomtest(k, n, 0.5).pvalue
    assert stats.binomial_two_sided(k, n) == pytest.approx(ref, rel=1e-9, abs=1e-300)


def test_mcnemar_counts_discordant_images():
    a = np.array([1, 1, 1, 0, 0, 1, 1, 0, 1, 1], bool)
    b = np.array([1, 0, 0, 0, 1, 0, 1, 0, 0, 1], bool)
    r = stats.mcnemar(a, b)
    assert r.detail == {"only_a": 4, "only_b": 1}
    assert r.estimate == pytest.approx(30.0)  # (4 - 1) / 10 images, in points
    assert r.p == pytest.approx(st.binomtest(4, 5, 0.5).pvalue)
    assert stats.mcnemar(a, a).p == 1.0


def test_mcnemar_seeds_takes_the_largest_p():
    rng = np.random.default_rng(0)
    a = rng.random((3, 300)) < 0.8
    b = rng.random((3, 300)) < 0.7
    per = [stats.mcnemar(x, y).p for x, y in zip(a, b)]
    assert stats.mcnemar_seeds(a, b).p == max(per)


def _exact_wilcoxon(d):
    """Brute force: every sign assignment of the mean ranks of the nonzero |d|."""
    d = np.asarray(d, float)
    d = d[d != 0]
    ranks = st.rankdata(np.abs(d))
    w = ranks[d > 0].sum()
    sums = [sum(r for r, s in zip(ranks, signs) if s)
            for signs in itertools.product([0, 1], repeat=len(d))]
    le = sum(s <= w + 1e-9 for s in sums) / len(sums)
    ge = sum(s >= w - 1e-9 for s in sums) / len(sums)
    return min(1.0, 2 * min(le, ge))


def test_wilcoxon_exact_matches_scipy_without_ties():
    rng = np.random.default_rng(3)
    for n in (5, 8, 11, 20):
        a = rng.normal(75, 3, n)
        b = a - rng.normal(0.7, 1.5, n)
        got = stats.wilcoxon(a, b)
        ref = st.wilcoxon(a, b, method="exact")
        assert got.p == pytest.approx(ref.pvalue, rel=1e-9)
        assert got.detail["statistic"] == pytest.approx(ref.statistic)


def test_wilcoxon_with_ties_and_zeros_is_the_exact_permutation_p():
    d = [0.5, 0.5, -0.5, 1.0, 2.0, 0.0, 2.0, -3.0, 1.5]
    got = stats.wilcoxon(d)
    assert got.p == pytest.approx(_exact_wilcoxon(d), rel=1e-12)
    assert got.detail["nonzero"] == 8


def test_wilcoxon_normal_approximation_matches_scipy():
    rng = np.random.default_rng(4)
    d = np.round(rng.normal(0.3, 1.0, 80), 1)  # ties, and n above the exact limit
    got = stats.wilcoxon(d)
    ref = st.wilcoxon(d, method="approx", correction=False, zero_method="wilcox")
    assert got.detail["method"] == "normal approximation"
    assert got.p == pytest.approx(ref.pvalue, rel=1e-9)


def test_wilcoxon_says_when_five_datasets_cannot_reach_alpha():
    r = stats.wilcoxon([1.0, 2.0, 3.0, 4.0, 5.0])
    assert r.p == pytest.approx(0.0625) and "cannot reach 0.05" in r.note


def test_holm_hand_derived():
    # sorted 0.01, 0.02, 0.03, 0.5 -> x4, x3, x2, x1 = 0.04, 0.06, 0.06 (monotone), 0.5
    got = stats.holm([0.03, 0.5, 0.01, math.nan, 0.02])
    assert got[0] == pytest.approx(0.06) and got[1] == pytest.approx(0.5)
    assert got[2] == pytest.approx(0.04) and math.isnan(got[3])
    assert got[4] == pytest.approx(0.06)
    assert stats.holm([0.6, 0.9]) == [1.0, 1.0]


def _naive_bootstrap(d, resamples, rng):
    """Resample seeds, then images, literally: (seeds, images) differences."""
    s, n = d.shape
    out = np.empty(resamples)
    for i in range(resamples):
        seeds = rng.integers(0, s, s)
        imgs = rng.integers(0, n, n)
        out[i] = d[np.ix_(seeds, imgs)].mean()
    return out


def test_paired_bootstrap_shortcut_has_the_naive_distribution():
    rng = np.random.default_rng(5)
    a = rng.random((3, 400)) < 0.78
    b = rng.random((3, 400)) < 0.74
    got = stats.paired_bootstrap(a, b, resamples=4000, seed=1)
    naive = 100 * _naive_bootstrap(a.astype(int) - b.astype(int), 4000, rng)
    assert got.estimate == pytest.approx(100 * (a.mean() - b.mean()))
    lo, hi = np.quantile(naive, [0.025, 0.975])
    assert got.ci[0] == pytest.approx(lo, abs=0.5) and got.ci[1] == pytest.approx(hi, abs=0.5)


def test_paired_bootstrap_one_seed_matches_scipy_bootstrap_interval():
    rng = np.random.default_rng(6)
    a = rng.random(500) < 0.8
    b = np.where(rng.random(500) < 0.1, ~a, a)
    got = stats.paired_bootstrap(a, b, resamples=20000, seed=2)
    d = 100 * (a.astype(float) - b.astype(float))
    ref = st.bootstrap((d,), np.mean, n_resamples=20000, method="percentile",
                       random_state=np.random.default_rng(3)).confidence_interval
    assert got.ci == pytest.approx((ref.low, ref.high), abs=0.25)


def test_paired_bootstrap_identical_runs_are_not_significant():
    a = np.random.default_rng(7).random((3, 200)) < 0.7
    r = stats.paired_bootstrap(a, a.copy(), resamples=500)
    assert r.p == 1.0 and r.estimate == 0.0


def test_paired_bootstrap_clear_gap_is_significant():
    rng = np.random.default_rng(8)
    a = rng.random((3, 1000)) < 0.9
    b = a & (rng.random((3, 1000)) < 0.8)  # B loses ~18% of A's right answers
    r = stats.paired_bootstrap(a, b, resamples=2000)
    assert r.p < 0.001 and r.ci[0] > 10
