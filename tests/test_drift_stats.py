"""Drift statistics agree with an independent numpy/scipy computation on the same bins.

The windowed path (reference bins -> slot counts -> summed window) is checked end to end: the
counts of a sliding window built slot by slot must equal a plain histogram of the same values.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from orbitwatch.processors.drift import sketch as sk
from orbitwatch.processors.drift import stats
from orbitwatch.processors.drift.binning import Reference
from orbitwatch.processors.drift.config import ModelDriftConfig
from orbitwatch.processors.drift.results import feature_metrics
from orbitwatch.processors.drift.state import FeatureState
from orbitwatch.processors.drift.windows import Clock, sum_slots


def independent_counts(ref: np.ndarray, cur: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-mass reference bins by np.quantile + np.histogram, plus below-min / above-max bins."""
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    lo, hi = ref.min(), ref.max()

    def count(x: np.ndarray) -> np.ndarray:
        h, _ = np.histogram(x[(x >= lo) & (x <= hi)], bins=edges)
        return np.concatenate([[np.sum(x < lo)], h, [np.sum(x > hi)]])
    return count(ref), count(cur)


def independent_metrics(rc: np.ndarray, cc: np.ndarray) -> dict[str, float]:
    p, q = rc / rc.sum(), cc / cc.sum()
    pe, qe = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    table = np.vstack([rc, cc])
    table = table[:, table.sum(axis=0) > 0]
    chi = sps.chi2_contingency(table, correction=False)
    return {"psi": float(np.sum((qe - pe) * np.log(qe / pe))),
            "jensen_shannon": float(jensenshannon(p, q, base=2)),
            "hellinger": float(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2))),
            "chi_square": float(chi.statistic), "chi_p": float(chi.pvalue)}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_binned_metrics_match_independent_numpy_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.normal(0, 1, 4000)
    cur = np.concatenate([rng.normal(0.3, 1.2, 3000), rng.uniform(-6, 6, 50)])  # some out of range
    r = Reference.numeric(ref, bins=20, exact_max=5000, sketch_k=200)
    rc, cc = independent_counts(ref, cur, 20)
    assert np.array_equal(r.counts, rc)
    assert np.array_equal(np.bincount(r.bin_numeric(cur), minlength=r.nbins), cc)
    want = independent_metrics(rc.astype(float), cc.astype(float))
    assert stats.psi(rc, cc) == pytest.approx(want["psi"], abs=1e-9)
    assert stats.jensen_shannon(rc, cc) == pytest.approx(want["jensen_shannon"], abs=1e-9)
    assert stats.hellinger(rc, cc) == pytest.approx(want["hellinger"], abs=1e-9)
    chi, p = stats.chi_square(rc, cc)
    assert chi == pytest.approx(want["chi_square"], abs=1e-9) and p == pytest.approx(want["chi_p"], abs=1e-9)
    assert 0.0 <= stats.jensen_shannon(rc, cc) <= 1.0


def test_categorical_bins_and_chi_square() -> None:
    rng = np.random.default_rng(7)
    ref = rng.choice(["a", "b", "c", "d"], 2000, p=[0.4, 0.3, 0.2, 0.1])
    cur = np.concatenate([rng.choice(["a", "b", "c", "d"], 1500, p=[0.25, 0.25, 0.25, 0.25]),
                          np.array(["zz"] * 20)])
    r = Reference.categorical(ref, max_categories=100)
    assert r.categories == ["a", "b", "c", "d"]  # most frequent first
    cc = np.bincount(r.bin_categorical(cur.astype(object)), minlength=r.nbins)
    want_cur = np.array([np.sum(cur == c) for c in ["a", "b", "c", "d"]] + [20])
    assert np.array_equal(cc, want_cur)
    want = independent_metrics(r.counts.astype(float), cc.astype(float))
    chi, p = stats.chi_square(r.counts, cc)
    assert chi == pytest.approx(want["chi_square"], abs=1e-9) and p == pytest.approx(want["chi_p"], abs=1e-9)
    assert stats.jensen_shannon(r.counts, cc) == pytest.approx(want["jensen_shannon"], abs=1e-9)


def test_discrete_numeric_gets_one_bin_per_value() -> None:
    r = Reference.numeric(np.array([0, 1, 1, 2, 2, 2], float), bins=20, exact_max=100, sketch_k=200)
    assert r.counts.tolist() == [0, 1, 2, 3, 0]
    assert r.default_method(1000) == "chi_square"


def test_sliding_window_counts_are_the_exact_sum_of_slots() -> None:
    """Values fed in random batches over 12 slots: every window's counts equal np.histogram of its values."""
    rng = np.random.default_rng(11)
    cfg = ModelDriftConfig(window_seconds=600, slide_seconds=100, exact_max_values=100_000)
    clock = Clock(600, 100, 0)
    ref = rng.normal(0, 1, 3000)
    f = FeatureState(name="x", kind="numeric", ref=Reference.numeric(ref, 20, 5000, 200))
    t = np.sort(rng.uniform(0, 1200, 6000))
    v = rng.normal(0.2, 1, t.size)
    v[rng.random(t.size) < 0.05] = np.nan  # missing values
    for chunk in np.array_split(np.arange(t.size), 37):
        slots = clock.slots_of(t[chunk])
        u, inv = np.unique(slots, return_inverse=True)
        f.update(u, inv.reshape(-1), v[chunk], np.isfinite(v[chunk]), cfg)
    for k in range(5, 12):
        start, end = clock.window_bounds(k)
        sel = (t >= start) & (t < end)
        total, offered = f.total(clock.window_slots(k), cfg)
        _, want = independent_counts(ref, v[sel & np.isfinite(v)], 20)
        assert np.array_equal(total.counts, want)
        assert offered == sel.sum() and total.n == (sel & np.isfinite(v)).sum()
        # exact samples: KS is scipy's ks_2samp on exactly these values
        d, p = feature_metrics(f.ref, total)["ks"]
        want_ks = sps.ks_2samp(ref, v[sel & np.isfinite(v)])
        assert d == want_ks.statistic and p == want_ks.pvalue


def test_exact_ks_and_wasserstein_equal_scipy() -> None:
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(0, 1, 800), rng.normal(0.1, 1.1, 600)
    r = Reference.numeric(ref, 20, 5000, 200)
    total = sum_slots([_slot(cur, r)], r.nbins, True, exact_max=2000, sketch_k=200)
    m = feature_metrics(r, total)
    want = sps.ks_2samp(ref, cur)
    assert m["ks"] == (want.statistic, want.pvalue)
    assert m["wasserstein_norm"][0] == pytest.approx(sps.wasserstein_distance(ref, cur) / np.std(ref), abs=1e-12)
    assert r.default_method(1000) == "ks"


@pytest.mark.parametrize("seed,shift", [(1, 0.0), (2, 0.1), (3, 0.5)])
def test_sketch_ks_within_stated_error(seed: int, shift: float) -> None:
    """Large samples go through KLL sketches; |D_sketch - D_exact| <= eps_ref + eps_cur + 1/grid."""
    rng = np.random.default_rng(seed)
    ref, cur = rng.normal(0, 1, 60_000), rng.normal(shift, 1, 40_000)
    r = Reference.numeric(ref, 20, exact_max=5000, sketch_k=200)
    assert not r.sample.exact
    total = sum_slots([_slot(a, r, exact_max=2000) for a in np.array_split(cur, 4)], r.nbins, True,
                      exact_max=2000, sketch_k=200)
    assert not total.sample.exact
    d, p = feature_metrics(r, total)["ks"]
    exact = sps.ks_2samp(ref, cur)
    bound = r.sample.error + total.sample.error + 1 / sk.GRID_POINTS
    assert bound == pytest.approx(2 * sk.kll_error(200) + 1 / sk.GRID_POINTS)
    assert abs(d - exact.statistic) <= bound
    assert p == pytest.approx(stats.ks_pvalue(d, ref.size, cur.size))
    w = feature_metrics(r, total)["wasserstein_norm"][0]
    w_exact = sps.wasserstein_distance(ref, cur) / np.std(ref)
    assert abs(w - w_exact) <= bound * (max(ref.max(), cur.max()) - min(ref.min(), cur.min())) / np.std(ref)


def test_benjamini_hochberg() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    # BH at 0.05 with m=10: thresholds 0.005, 0.01, 0.015, ... -> rejects the first two only
    assert stats.benjamini_hochberg(p, 0.05).tolist() == [True, True] + [False] * 8
    assert stats.benjamini_hochberg([], 0.05).size == 0
    # the step-up: a larger p below its own line rejects everything ranked before it
    assert stats.benjamini_hochberg([0.04, 0.03, 0.02], 0.05).all()


def test_auc_and_classification_metrics() -> None:
    rng = np.random.default_rng(9)
    score = rng.random(2000)
    label = (rng.random(2000) < score).astype(int)
    binned = np.minimum((score * 100).astype(int), 99)
    pos = np.bincount(binned[label == 1], minlength=100)
    neg = np.bincount(binned[label == 0], minlength=100)
    u = sps.mannwhitneyu(binned[label == 1], binned[label == 0]).statistic  # ties count 1/2
    assert stats.auc_from_histograms(pos, neg) == pytest.approx(u / (pos.sum() * neg.sum()), abs=1e-12)
    pred = (score > 0.5).astype(int)
    cm = np.zeros((2, 2), int)
    np.add.at(cm, (label, pred), 1)
    m = stats.classification_metrics(cm, positive=1)
    tp = np.sum((pred == 1) & (label == 1))
    assert m["accuracy"] == pytest.approx(np.mean(pred == label))
    assert m["f1"] == pytest.approx(2 * tp / (np.sum(pred == 1) + np.sum(label == 1)))


def _slot(values: np.ndarray, ref: Reference, exact_max: int = 100_000):
    from orbitwatch.processors.drift.windows import FeatureSlot
    s = FeatureSlot(counts=np.bincount(ref.bin_numeric(values), minlength=ref.nbins))
    s.add_numeric(values, exact_max, 200)
    return s
