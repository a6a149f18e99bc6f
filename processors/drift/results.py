"""Turn one window's state into DriftResult / DataQuality records.

Kept apart from the operator so the statistics of a window can be read (and tested) without
any streaming machinery: give it a :class:`ModelState` and a window index, get records back.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timezone

import numpy as np

from orbitwatch.processors.drift import sketch as sk
from orbitwatch.processors.drift import stats
from orbitwatch.processors.drift.binning import Reference
from orbitwatch.processors.drift.state import PREDICTION, ModelState, PerfSlot
from orbitwatch.processors.drift.windows import WindowTotal
from orbitwatch.schemas.records import DataQuality, DriftResult

log = logging.getLogger(__name__)

DATASET = "__dataset__"
PERFORMANCE = "__performance__"
NUMERIC_METRICS = ("psi", "jensen_shannon", "hellinger", "ks", "wasserstein_norm")
CATEGORICAL_METRICS = ("chi_square", "psi", "jensen_shannon", "hellinger")
HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "auc": True, "mae": False, "rmse": False}


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def feature_metrics(ref: Reference, total: WindowTotal) -> dict[str, tuple[float, float | None]]:
    """All metrics of one feature in one window: name -> (value, p_value or None)."""
    out: dict[str, tuple[float, float | None]] = {}
    rc, cc = ref.counts, total.counts
    out["psi"] = (stats.psi(rc, cc), None)
    out["jensen_shannon"] = (stats.jensen_shannon(rc, cc), None)
    out["hellinger"] = (stats.hellinger(rc, cc), None)
    if ref.kind == "categorical" or ref.n_unique <= 5:
        chi, p = stats.chi_square(rc, cc)
        out["chi_square"] = (chi, p)
    if ref.kind == "numeric" and total.sample is not None and total.n > 0:
        rs, cs = ref.sample, total.sample
        assert rs is not None
        if rs.exact and cs.exact:
            d, p = stats.ks_exact(rs.values, cs.values)  # type: ignore[arg-type]
            w = stats.wasserstein_norm_exact(rs.values, cs.values, ref.std)  # type: ignore[arg-type]
        else:
            grid = sk.union_grid(rs, cs)
            fr, fc = rs.cdf(grid), cs.cdf(grid)
            d = stats.ks_from_cdfs(grid, fr, fc)
            p = stats.ks_pvalue(d, rs.n, cs.n)
            w = stats.wasserstein_from_cdfs(grid, fr, fc) / (ref.std if ref.std > 0 else 1e-12)
        out["ks"] = (d, p)
        out["wasserstein_norm"] = (w, None)
    return out


def gate_metrics(ref: Reference) -> tuple[str, str]:
    """(p-value test, effect size) of a feature: KS + normalised Wasserstein for continuous numeric
    features, chi-square + Jensen–Shannon for categorical ones and numeric ones with <= 5 values."""
    if ref.kind == "categorical" or ref.n_unique <= 5:
        return "chi_square", "jensen_shannon"
    return "ks", "wasserstein_norm"


def effect_margin(cfg, ref: Reference, n: int) -> float:
    """Sampling noise of the effect size between n current and ref.n reference values, times
    ``cfg.noise_margin``: sqrt(1/n + 1/m) for normalised Wasserstein (in reference sigmas), times
    sqrt((K-1) / (8 ln 2)) for the JS distance over K bins (its null scale from the chi-square limit)."""
    if not cfg.noise_margin or n <= 0 or ref.n <= 0:
        return 0.0
    scale = math.sqrt(1.0 / n + 1.0 / ref.n)
    _, effect = gate_metrics(ref)
    if effect == "jensen_shannon":
        k = int(np.count_nonzero(ref.counts)) or 2
        scale *= math.sqrt(max(k - 1, 1) / (8 * math.log(2)))
    return cfg.noise_margin * scale


def chosen_method(st: ModelState, feature: str, ref: Reference) -> str:
    method = st.cfg.method_for(feature)
    if method == "auto":
        return ref.default_method(st.cfg.small_reference)
    applicable = NUMERIC_METRICS if ref.kind == "numeric" else CATEGORICAL_METRICS
    if method not in applicable and not (method == "chi_square" and ref.n_unique <= 5):
        log.warning("drift: method %s does not apply to %s feature %s of %s; using the default",
                    method, ref.kind, feature, st.key)
        return ref.default_method(st.cfg.small_reference)
    return method


def window_records(st: ModelState, k: int, final: bool, now: float) -> tuple[list[DriftResult], list[DataQuality]]:
    """Every drift, data-quality and performance record of window ``k`` of one model."""
    cfg = st.cfg
    start, end = st.clock.window_bounds(k)
    slots = st.clock.window_slots(k)
    base = dict(tenant=st.tenant, project=st.project, model=st.model, model_version=st.version,
                window_start=_ts(start), window_end=_ts(end), is_final=final, computed_at=_ts(now))
    drift: list[DriftResult] = []
    quality: list[DataQuality] = []
    events = sum(st.events.get(j, 0) for j in slots)

    # per feature: its chosen test plus the p-value test and the effect size used as gates
    chosen: list[tuple[str, str, float, float | None, int, int, float | None, float | None]] = []
    for name in sorted(st.features):
        f = st.features[name]
        got = f.total(slots, cfg)
        if got is None or f.ref is None:
            continue
        total, offered = got
        ref = f.ref
        if offered:
            quality.append(DataQuality(feature=name, metric="missing_rate", value=1.0 - total.n / offered, **base))
        if total.n == 0:
            continue
        if ref.kind == "numeric":
            quality.append(DataQuality(feature=name, metric="out_of_range_share",
                                       value=float(total.counts[0] + total.counts[-1]) / total.n, **base))
        else:
            quality.append(DataQuality(feature=name, metric="unseen_share", value=float(total.counts[-1]) / total.n,
                                       **base))
            quality.append(DataQuality(feature=name, metric="unseen_categories", value=float(len(total.unseen)),
                                       **base))
        metrics = feature_metrics(ref, total)
        method = chosen_method(st, name, ref)
        test, effect = gate_metrics(ref)
        for metric, (value, p) in metrics.items():
            if metric == method:
                chosen.append((name, metric, value, p, total.n, ref.n, metrics[test][1], metrics[effect][0]))
                continue
            thr = cfg.thresholds[metric]
            if metric in stats.P_VALUE_METRICS:
                flagged = p is not None and p < thr
            else:
                flagged = value > thr and total.n >= cfg.min_sample
            drift.append(DriftResult(feature=name, metric=metric, value=_finite(value), threshold=thr,
                                     drifted=bool(flagged), p_value=p, sample_size=total.n,
                                     reference_size=ref.n, is_primary=False, **base))

    # significance: one Benjamini–Hochberg family over the features' p-value tests
    gate_p = [row[6] if row[6] is not None else 1.0 for row in chosen]
    if cfg.fdr_alpha:
        significant = stats.benjamini_hochberg(gate_p, cfg.fdr_alpha).tolist()
    else:
        significant = [p < cfg.thresholds["ks"] for p in gate_p]
    n_feat = n_drift = 0
    for i, (name, metric, value, p, n, ref_n, _, effect_value) in enumerate(chosen):
        thr = cfg.threshold_for(name, metric)
        ref = st.features[name].ref
        assert ref is not None
        _, effect = gate_metrics(ref)
        if metric in stats.P_VALUE_METRICS:
            flagged = bool(significant[i]) if cfg.fdr_alpha else (p is not None and p < thr)
            if cfg.require_effect and effect_value is not None:
                flagged = flagged and effect_value > cfg.thresholds[effect] + effect_margin(cfg, ref, n)
        else:
            if metric == effect:
                thr = thr + effect_margin(cfg, ref, n)
            flagged = value > thr and n >= cfg.min_sample
            if cfg.require_significance:
                flagged = flagged and bool(significant[i])
        if name != PREDICTION:
            n_feat += 1
            n_drift += int(flagged)
        drift.append(DriftResult(feature=name, metric=metric, value=_finite(value), threshold=thr,
                                 drifted=bool(flagged), p_value=p, sample_size=n, reference_size=ref_n,
                                 is_primary=True, **base))
    if n_feat:
        share = n_drift / n_feat
        drift.append(DriftResult(feature=DATASET, metric="drift_share", value=share, threshold=cfg.drift_share,
                                 drifted=share >= cfg.drift_share, sample_size=events, reference_size=n_feat,
                                 is_primary=True, **base))

    # volume
    quality.append(DataQuality(feature=DATASET, metric="volume", value=float(events), **base))
    expected = cfg.expected_volume or (float(np.mean(st.volumes)) if st.volumes else None)
    if expected:
        quality.append(DataQuality(feature=DATASET, metric="volume_ratio", value=events / expected, **base))

    drift.extend(_performance(st, slots, final, base))
    return drift, quality


def _performance(st: ModelState, slots: range, final: bool, base: dict) -> list[DriftResult]:
    parts = [st.perf[j] for j in slots if j in st.perf]
    if not parts:
        return []
    size = max(p.confusion.shape[0] for p in parts)
    total = PerfSlot(confusion=np.zeros((size, size), np.int64))
    for p in parts:
        k = p.confusion.shape[0]
        total.confusion[:k, :k] += p.confusion
        total.pos_hist += p.pos_hist
        total.neg_hist += p.neg_hist
        total.reg_n += p.reg_n
        total.reg_abs += p.reg_abs
        total.reg_sq += p.reg_sq
    values: dict[str, tuple[float, int]] = {}
    n_cls = int(total.confusion.sum())
    if n_cls:
        positive = st.classes.get(st.cfg.positive_label) if len(st.classes) <= 2 else None
        for name, v in stats.classification_metrics(total.confusion, positive).items():
            values[name] = (v, n_cls)
        auc = stats.auc_from_histograms(total.pos_hist, total.neg_hist)
        if auc is not None:
            values["auc"] = (auc, int(total.pos_hist.sum() + total.neg_hist.sum()))
    if total.reg_n:
        values["mae"] = (total.reg_abs / total.reg_n, total.reg_n)
        values["rmse"] = (math.sqrt(total.reg_sq / total.reg_n), total.reg_n)
    out = []
    drop = st.cfg.performance_drop
    for name, (v, n) in values.items():
        baseline = st.perf_baseline.get(name)
        if baseline is None:
            thr, flagged = 0.0, False
            if final and n >= st.cfg.min_sample:
                st.perf_baseline[name] = v
        elif HIGHER_IS_BETTER[name]:
            thr = baseline * (1 - drop)
            flagged = v < thr and n >= st.cfg.min_sample
        else:
            thr = baseline * (1 + drop)
            flagged = v > thr and n >= st.cfg.min_sample
        out.append(DriftResult(feature=PERFORMANCE, metric=name, value=_finite(v), threshold=thr,
                               drifted=bool(flagged), sample_size=n, is_primary=True, **base))
    return out


def _finite(v: float) -> float:
    return float(v) if math.isfinite(v) else 1e308
