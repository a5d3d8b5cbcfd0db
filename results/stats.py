"""Paired statistics for "method A beats method B": pure functions over plain arrays.

Every test is two-sided, of the difference A − B, in accuracy points (percent) where the inputs are
accuracies or per-image correctness, and returns a :class:`Comparison`. What is paired with what:

* **over seeds** (:func:`paired_t`): the two methods' accuracies for the same seeds (the same
  few-shot subsets); the mean difference with a Student-t interval over seeds. With 2-3 seeds the
  t quantile is 12.7 (1 df) or 4.3 (2 df): intervals are wide and a ``note`` says so.
* **over test images** (needs per-image predictions, :mod:`results.predictions`):
  :func:`mcnemar` — McNemar's exact test for one seed (a binomial test on the images exactly one
  method gets right); :func:`mcnemar_seeds` — one per seed, combined as an intersection-union test
  (the largest p: "significant in every seed"); :func:`paired_bootstrap` — resampling test images
  *and* seeds (seeded, ``resamples`` configurable), a percentile interval and p-value, also of an
  average over datasets.
* **across datasets** (:func:`wilcoxon`, :func:`paired_t`): the per-dataset mean differences, one
  per dataset. The default is the Wilcoxon signed-rank test (Demšar 2006, "Statistical
  comparisons of classifiers over multiple data sets", JMLR 7: differences on different datasets
  are not commensurable and not normal; the t-test over datasets is swayed by one dataset with a
  large gap). With n datasets its smallest two-sided p is 2/2^n: 0.0625 for the demo's 5, so it
  cannot reach 0.05 below 6 datasets; the ``note`` says so.
* **multiple comparisons** (:func:`holm`): Holm–Bonferroni adjusted p-values over a family; which
  family is the caller's choice (:mod:`results.significance`: every p-value of one table).

numpy and scipy only (scipy comes with scikit-learn); tests/test_stats.py checks every function
against scipy.stats (ttest_rel, binomtest, wilcoxon, bootstrap) on the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import stats as _st

CONFIDENCE = 0.95
RESAMPLES = 10_000
EXACT_WILCOXON_MAX = 50  # exact (conditional on ties) below, normal approximation above


@dataclass(frozen=True)
class Comparison:
    """One test of A − B. ``estimate``: the mean difference; ``ci``: its interval (None where
    the test gives none); ``n``: what it is over (seeds, images, datasets); ``detail``: the
    test's own numbers (t and df, discordant counts, per-seed results, ...)."""

    test: str
    estimate: float
    p: float
    ci: tuple[float, float] | None
    n: int
    note: str = ""
    detail: dict = field(default_factory=dict)


def _pair(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need two 1-d arrays of one length, got {a.shape} and "
                         f"{b.shape}")
    return a - b


# ----------------------------------------------------------------------------- t over seeds
def _t_note(n: int, what: str) -> str:
    if n == 2:
        return f"2 {what}: t with 1 df (quantile 12.7), the interval is very wide"
    if n == 3:
        return f"3 {what}: t with 2 df (quantile 4.3), the interval is wide"
    return ""


def paired_t(a, b, *, confidence: float = CONFIDENCE, unit: str = "seeds") -> Comparison:
    """Paired t-test of ``a − b`` (same ``unit`` in the same order: seeds, or datasets) and the
    t interval of the mean difference. Sample std (ddof 1). All differences equal: no spread,
    t is infinite (p 0) or undefined (p 1 when they are all 0), as scipy.stats.ttest_rel."""
    d = _pair(a, b)
    n = d.size
    if n == 0:
        raise ValueError("no paired values")
    mean = float(d.mean())
    if n == 1:
        return Comparison("paired t-test", mean, math.nan, None, 1,
                          f"one {unit[:-1]}: no test")
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    df = n - 1
    note = _t_note(n, unit)
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
        return Comparison("paired t-test", mean, p, (mean, mean), n,
                          f"the same difference for every {unit[:-1]}: no spread to test against",
                          {"t": math.inf if mean else math.nan, "df": df, "sd": 0.0})
    t = mean / se
    p = float(2 * _st.t.sf(abs(t), df))
    half = float(_st.t.ppf(0.5 + confidence / 2, df)) * se
    return Comparison("paired t-test", mean, p, (mean - half, mean + half), n, note,
                      {"t": t, "df": df, "sd": sd})


def mean_ci(values, *, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student-t interval of a mean (over seeds); None with fewer than 2 values."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return None
    half = float(_st.t.ppf(0.5 + confidence / 2, v.size - 1)) * float(v.std(ddof=1)) \
        / math.sqrt(v.size)
    return float(v.mean()) - half, float(v.mean()) + half


# ----------------------------------------------------------------------------- McNemar
def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p of ``k`` successes in ``n`` fair coin flips: twice the smaller tail,
    at most 1 (integer arithmetic: exact for any n)."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    term, tail = 1, 1  # C(n, 0)
    for i in range(k):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / (1 << n))


def mcnemar(correct_a, correct_b) -> Comparison:
    """McNemar's exact test on one seed's test images: ``b`` images only A gets right, ``c``
    only B; under the null each discordant image is a fair coin (binomial test of b in b + c).
    ``estimate`` = 100 (b − c) / images = the accuracy difference in points."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"McNemar needs two equal-length 1-d correctness arrays, got {a.shape} "
                         f"and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = binomial_two_sided(only_a, only_a + only_b)
    return Comparison("McNemar exact test", 100.0 * (only_a - only_b) / a.size, p, None,
                      int(a.size), "" if only_a + only_b else "no image differs",
                      {"only_a": only_a, "only_b": only_b})


def mcnemar_seeds(correct_a, correct_b) -> Comparison:
    """McNemar per seed (rows of (seeds, images) arrays), combined as an intersection-union
    test: p = the largest per-seed p, so "significant" means significant in every seed (a
    valid level-alpha test of "A differs from B in every seed"; conservative for "on average")."""
    a, b = np.atleast_2d(correct_a), np.atleast_2d(correct_b)
    per = [mcnemar(x, y) for x, y in zip(a, b)]
    return Comparison("McNemar exact test per seed (largest p)",
                      float(np.mean([c.estimate for c in per])), max(c.p for c in per), None,
                      len(per), "" if len(per) > 1 else "one seed",
                      {"seeds": [{"only_a": c.detail["only_a"], "only_b": c.detail["only_b"],
                                  "p": c.p} for c in per]})


# ----------------------------------------------------------------------------- bootstrap
def _replicates(mats: Sequence[np.ndarray], resamples: int, seed: int,
                resample_seeds: bool) -> tuple[float, np.ndarray]:
    """Bootstrap replicates of ``mean over datasets of (mean over seeds and images of X)`` for
    (seeds, images) arrays ``mats`` (one per dataset, the same seeds in the same order).

    Seeds are drawn with replacement once per replicate (the same draw for every dataset: seed s
    of one dataset goes with seed s of another, as in the per-seed average); test images with
    replacement per dataset. Exact shortcut, not an approximation: a replicate's mean depends on
    the images drawn only through how many of each column pattern (the image's values over the
    seeds) were drawn, and those counts are multinomial with the patterns' frequencies; so each
    replicate costs (patterns x seeds), not (images x seeds)."""
    rng = np.random.default_rng(seed)
    n_seeds = mats[0].shape[0]
    if any(m.ndim != 2 or m.shape[0] != n_seeds or m.shape[1] == 0 for m in mats):
        raise ValueError("bootstrap inputs must be (seeds, images) arrays with one seed count")
    w = (rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=resamples)
         if resample_seeds and n_seeds > 1 else np.ones((resamples, n_seeds), dtype=np.int64))
    total = np.zeros(resamples)
    for m in mats:
        patterns, counts = np.unique(m.T, axis=0, return_counts=True)  # (P, seeds), (P,)
        drawn = rng.multinomial(m.shape[1], counts / counts.sum(), size=resamples)  # (B, P)
        per_seed = drawn @ patterns  # (B, seeds): the sum over drawn images, per seed
        total += (per_seed * w).sum(axis=1) / (n_seeds * m.shape[1])
    estimate = float(np.mean([m.mean() for m in mats]))
    return estimate, total / len(mats)


def paired_bootstrap(correct_a, correct_b, *, resamples: int = RESAMPLES, seed: int = 0,
                     confidence: float = CONFIDENCE, resample_seeds: bool = True) -> Comparison:
    """Paired bootstrap of A − B over test images and seeds.

    ``correct_a``/``correct_b``: (seeds, images) boolean arrays (the same images in the same
    order; a 1-d array is one seed), or lists of them, one per dataset, for the average over
    datasets. ``estimate`` = 100 x the mean of (A − B); ``ci`` its percentile interval; ``p`` =
    the two-sided bootstrap p, 2 x the smaller share of replicates on either side of 0 (zeros
    counted on both sides), (1 + count) / (1 + resamples): the smallest alpha whose percentile
    interval would exclude 0. With 3 seeds the seed level has few distinct draws (10): the
    interval mostly reflects the test images."""
    many = isinstance(correct_a, (list, tuple)) and np.ndim(correct_a[0]) == 2
    pairs = list(zip(correct_a, correct_b)) if many else [(correct_a, correct_b)]
    mats = []
    for a, b in pairs:
        a, b = np.atleast_2d(np.asarray(a, dtype=bool)), np.atleast_2d(np.asarray(b, dtype=bool))
        if a.shape != b.shape:
            raise ValueError(f"paired correctness arrays of shapes {a.shape} and {b.shape}")
        mats.append(a.astype(np.int8) - b.astype(np.int8))
    estimate, reps = _replicates(mats, resamples, seed, resample_seeds)
    lo, hi = np.quantile(reps, [0.5 - confidence / 2, 0.5 + confidence / 2])
    below, above = int((reps <= 0).sum()), int((reps >= 0).sum())
    p = min(1.0, 2 * (1 + min(below, above)) / (1 + resamples))
    if not np.any(reps):
        p = 1.0  # no image differs: every replicate is 0
    n_seeds = mats[0].shape[0]
    return Comparison("paired bootstrap over test images and seeds", 100 * estimate, p,
                      (100 * float(lo), 100 * float(hi)), sum(m.shape[1] for m in mats),
                      "3 or fewer seeds: the seed level has few distinct resamples"
                      if resample_seeds and 1 < n_seeds <= 3 else "",
                      {"resamples": resamples, "seed": seed, "seeds": n_seeds,
                       "datasets": len(mats)})


def bootstrap_ci(correct, *, resamples: int = RESAMPLES, seed: int = 0,
                 confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of one method's accuracy (points) over test images and seeds;
    ``correct`` as for :func:`paired_bootstrap`."""
    many = isinstance(correct, (list, tuple)) and np.ndim(correct[0]) == 2
    mats = [np.atleast_2d(np.asarray(c, dtype=bool)).astype(np.int8)
            for c in (correct if many else [correct])]
    _, reps = _replicates(mats, resamples, seed, True)
    lo, hi = np.quantile(reps, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return 100 * float(lo), 100 * float(hi)


# ----------------------------------------------------------------------------- Wilcoxon
def _signed_rank_counts(ranks2: np.ndarray) -> np.ndarray:
    """How many of the 2^n sign assignments give each sum of positive (doubled) ranks."""
    counts = np.zeros(int(ranks2.sum()) + 1, dtype=object)  # exact integers: no overflow
    counts[0] = 1
    for r in ranks2:
        shifted = np.zeros_like(counts)
        shifted[r:] = counts[:len(counts) - r]
        counts = counts + shifted
    return counts


def wilcoxon(a, b=None, *, unit: str = "datasets", alpha: float = 0.05) -> Comparison:
    """Wilcoxon signed-rank test of the paired differences ``a − b`` (or of ``a`` alone).

    Zero differences are dropped (Wilcoxon's rule, scipy's default ``zero_method="wilcox"``);
    tied absolute differences get their mean rank. Up to 50 nonzero differences the p-value is
    exact: the distribution of the positive rank sum over all 2^n sign flips, given the ranks
    (with ties too; scipy's ``method="exact"`` or exhaustive permutations). Above 50, the normal
    approximation with the tie correction and no continuity correction (scipy's "asymptotic").
    ``estimate`` is the mean difference; ``detail`` has the statistic min(W+, W−)."""
    d = np.asarray(a, dtype=float) if b is None else _pair(a, b)
    estimate = float(d.mean()) if d.size else math.nan
    nz = d[d != 0]
    n = int(nz.size)
    if n == 0:
        return Comparison("Wilcoxon signed-rank test", estimate, 1.0, None, int(d.size),
                          "every difference is 0")
    ranks = _st.rankdata(np.abs(nz))
    w_plus = float(ranks[nz > 0].sum())
    w_minus = float(ranks.sum() - w_plus)
    smallest = 2.0 / 2 ** n
    counted = f"{d.size} {unit}" if n == d.size else f"{n} nonzero differences of {d.size} {unit}"
    note = (f"{counted}: the smallest possible p is {smallest:.3g}, the test cannot reach {alpha}"
            if smallest > alpha else "")
    if n <= EXACT_WILCOXON_MAX:
        ranks2 = np.rint(2 * ranks).astype(int)  # mean ranks are multiples of 1/2
        counts = _signed_rank_counts(ranks2)
        obs = int(round(2 * w_plus))
        total = 1 << n
        le, ge = int(counts[:obs + 1].sum()), int(counts[obs:].sum())
        p = min(1.0, 2 * min(le, ge) / total)
        method = "exact"
    else:
        _, t = np.unique(np.abs(nz), return_counts=True)
        mn = n * (n + 1) / 4
        var = n * (n + 1) * (2 * n + 1) / 24 - float((t ** 3 - t).sum()) / 48
        z = (w_plus - mn) / math.sqrt(var)
        p = float(min(1.0, 2 * _st.norm.sf(abs(z))))
        method = "normal approximation"
    return Comparison("Wilcoxon signed-rank test", estimate, p, None, int(d.size), note,
                      {"statistic": min(w_plus, w_minus), "w_plus": w_plus, "nonzero": n,
                       "method": method})


# ----------------------------------------------------------------------------- Holm
def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order: sorted ascending, the i-th
    smallest (from 0) is multiplied by m − i, made non-decreasing, capped at 1. NaN entries
    (no test) stay NaN and are not counted in the family size m. Rejecting where the adjusted
    p < alpha controls the family-wise error rate at alpha under any dependence."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    running = 0.0
    for i, j in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out.tolist()
