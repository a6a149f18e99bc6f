"""Drift metrics on binned counts and on (exact or sketched) one-dimensional samples.

Everything here is a pure function of numpy arrays so that the tests can check each one against
an independent numpy/scipy computation on the same bins, and so that the operator can call them
on the window totals it keeps (see :mod:`.windows`).

Conventions (chosen to match Evidently's stattests, so numbers are comparable):

* ``psi``: population stability index on bin proportions, each proportion clipped below at
  ``PSI_EPS`` = 1e-4 so empty bins give a finite value; threshold 0.1 (0.1–0.2 moderate shift).
* ``jensen_shannon``: Jensen–Shannon *distance* with base-2 logarithms, in [0, 1] (no clipping:
  it is finite with empty bins); threshold 0.1.
* ``hellinger``: Hellinger distance sqrt(1 - sum(sqrt(p*q))) in [0, 1]; threshold 0.1.
* ``chi_square``: two-sample chi-square test of homogeneity on the 2 x K contingency table of
  reference and current counts (categories empty on both sides dropped, no Yates correction, so
  for two categories it equals the two-proportion z-test Evidently uses for binary features);
  value = statistic, ``p_value`` reported; flagged when p < 0.05 (after Benjamini–Hochberg).
* ``ks``: two-sample Kolmogorov–Smirnov statistic; exact samples go through
  ``scipy.stats.ks_2samp`` itself, sketches through :func:`ks_from_cdfs` with the asymptotic
  Kolmogorov distribution for the p-value (what scipy uses for large samples).
* ``wasserstein_norm``: 1-Wasserstein distance divided by the reference standard deviation
  (ddof=0), threshold 0.1 — Evidently's ``wasserstein`` test.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

PSI_EPS = 1e-4

# Default thresholds per metric (value > threshold drifts; for p-value metrics p < threshold).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "psi": 0.1,
    "jensen_shannon": 0.1,
    "hellinger": 0.1,
    "wasserstein_norm": 0.1,
    "ks": 0.05,
    "chi_square": 0.05,
}
P_VALUE_METRICS = frozenset({"ks", "chi_square"})


def proportions(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray, eps: float = PSI_EPS) -> float:
    """Population stability index: sum((c - r) * ln(c / r)) over clipped bin proportions."""
    r = np.clip(proportions(ref_counts), eps, None)
    c = np.clip(proportions(cur_counts), eps, None)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Jensen–Shannon distance, base 2 (0 identical, 1 disjoint supports)."""
    r = proportions(ref_counts)
    c = proportions(cur_counts)
    m = 0.5 * (r + c)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_r = np.where(r > 0, r * np.log2(r / m), 0.0).sum()
        kl_c = np.where(c > 0, c * np.log2(c / m), 0.0).sum()
    return float(math.sqrt(max(0.0, 0.5 * (kl_r + kl_c))))


def hellinger(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Hellinger distance sqrt(1 - Bhattacharyya coefficient), in [0, 1]."""
    bc = float(np.sum(np.sqrt(proportions(ref_counts) * proportions(cur_counts))))
    return math.sqrt(max(0.0, 1.0 - bc))


def chi_square(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Two-sample chi-square homogeneity test; returns (statistic, p_value)."""
    table = np.vstack([np.asarray(ref_counts, np.float64), np.asarray(cur_counts, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or table[0].sum() == 0 or table[1].sum() == 0:
        return 0.0, 1.0
    res = sps.chi2_contingency(table, correction=False)
    return float(res.statistic), float(res.pvalue)


def ks_exact(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Exact two-sample KS: scipy's own ks_2samp (exact p-value for small samples)."""
    res = sps.ks_2samp(ref, cur)
    return float(res.statistic), float(res.pvalue)


def ks_pvalue(d: float, n_ref: int, n_cur: int) -> float:
    """Two-sided asymptotic p-value for a KS statistic, as scipy's ``method='asymp'``."""
    if n_ref <= 0 or n_cur <= 0:
        return 1.0
    en = n_ref * n_cur / (n_ref + n_cur)
    return float(np.clip(sps.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def wasserstein_norm_exact(ref: np.ndarray, cur: np.ndarray, ref_std: float) -> float:
    """scipy's 1-Wasserstein distance divided by the reference std (Evidently's normalisation)."""
    if ref_std <= 0:
        ref_std = 1e-12
    return float(sps.wasserstein_distance(ref, cur) / ref_std)


def ks_from_cdfs(grid: np.ndarray, f_ref: np.ndarray, f_cur: np.ndarray) -> float:
    """sup |F_ref - F_cur| over a grid where both right-continuous CDFs were evaluated."""
    if grid.size == 0:
        return 0.0
    return float(np.max(np.abs(f_ref - f_cur)))


def wasserstein_from_cdfs(grid: np.ndarray, f_ref: np.ndarray, f_cur: np.ndarray) -> float:
    """Integral of |F_ref - F_cur| dx for step CDFs evaluated (right-continuous) at sorted ``grid``."""
    if grid.size < 2:
        return 0.0
    return float(np.sum(np.abs(f_ref[:-1] - f_cur[:-1]) * np.diff(grid)))


def benjamini_hochberg(p_values: Sequence[float], alpha: float) -> np.ndarray:
    """Boolean rejections controlling the false discovery rate at ``alpha`` across the family."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    below = ranked <= alpha * np.arange(1, m + 1) / m
    reject = np.zeros(m, dtype=bool)
    if below.any():
        k = int(np.nonzero(below)[0].max())
        reject[order[: k + 1]] = True
    return reject


# -- performance ---------------------------------------------------------------------------------
def auc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """ROC AUC from score histograms of positives and negatives on the same (sorted) bins.

    Mann–Whitney: P(score_pos > score_neg) + 0.5 P(tie); pairs in the same bin count as ties,
    so the value equals the exact AUC of scores rounded to the bins.
    """
    pos = np.asarray(pos, np.float64)
    neg = np.asarray(neg, np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return None
    neg_below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    return float((np.sum(pos * neg_below) + 0.5 * np.sum(pos * neg)) / (n_pos * n_neg))


def classification_metrics(confusion: np.ndarray, positive: int | None) -> dict[str, float]:
    """accuracy and F1 from a confusion matrix (rows = label, cols = prediction).

    F1 is binary F1 of ``positive`` when given (two-class problems), else macro F1 over the labels seen.
    """
    cm = np.asarray(confusion, np.float64)
    total = cm.sum()
    if total == 0:
        return {}
    out = {"accuracy": float(np.trace(cm) / total)}
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    if positive is not None and positive < cm.shape[0]:
        out["f1"] = float(f1[positive])
    else:
        present = cm.sum(axis=1) > 0
        out["f1"] = float(f1[present].mean()) if present.any() else 0.0
    return out
