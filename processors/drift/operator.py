"""The drift Processor: prediction envelopes in, drift / data-quality rows and envelopes out.

Per batch: decode envelopes (undecodable ones go to the DLQ with the reason), group by model
version, apply reference chunks, turn predictions into one numpy column per feature and count
them into event-time slots (:mod:`.state`, :mod:`.windows`), join labels, advance the watermark
and emit the *final* results of windows that closed. ``tick`` emits *provisional* results of the
open windows every ``emit_interval_seconds``. Results are written to ClickHouse
(``drift_results``, ``data_quality``: ReplacingMergeTree(computed_at), so the final row replaces
the provisional ones of its window) and published to ``orbitwatch.drift`` for the alert processor.

ClickHouse failures never make a batch count twice: rows that could not be written wait in a
bounded outbox (part of the snapshot) and are retried first on the next call; while the outbox
cannot be flushed, ``handle`` raises :class:`RetryableError` *before* touching any state.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from prometheus_client import Counter

from orbitwatch.processors.base import Emit, Message, RetryableError
from orbitwatch.processors.drift.config import DriftConfig
from orbitwatch.processors.drift.results import window_records
from orbitwatch.processors.drift.state import PREDICTION, PROB_BINS, FeatureState, ModelState, PerfSlot
from orbitwatch.processors.drift.windows import Clock
from orbitwatch.schemas import envelope
from orbitwatch.schemas import records as r
from orbitwatch.schemas.attributes import TENANT_HEADER

log = logging.getLogger(__name__)

INPUT_TOPIC = "orbitwatch.predictions"
OUTPUT_TOPIC = "orbitwatch.drift"
DLQ_TOPIC = "orbitwatch.dlq"
ERROR_HEADER = "orbitwatch-error"
SOURCE_HEADER = "orbitwatch-source"
OUTBOX_MAX_ROWS = 20_000

EVENTS = Counter("orbitwatch_drift_events_total", "prediction-stream records seen by the drift processor",
                 ["kind"])
DROPPED = Counter("orbitwatch_drift_dropped_total",
                  "records or values the drift processor could not use, by reason", ["reason"])
ROWS = Counter("orbitwatch_drift_rows_total", "drift/data-quality rows emitted", ["table", "final"])


def _model_key(t: Any) -> tuple[str, str, str, str]:
    return (t.tenant, t.project, t.model, t.model_version)


class DriftProcessor:
    """Rolling data drift, data quality and performance per (project, model, version)."""

    name = "drift"
    topics = (INPUT_TOPIC,)

    def __init__(self, config: DriftConfig | None = None, storage: Any | None = None,
                 clock: Any = time.time) -> None:
        self.config = config or DriftConfig()
        self.config.validate_all()
        self.storage = storage
        self.models: dict[tuple[str, str, str, str], ModelState] = {}
        self.outbox: list[r.DriftResult | r.DataQuality] = []  # rows not yet written
        # last offset counted per "topic/partition": at-least-once replays of messages already in
        # the state (crash between state save and offset commit) are skipped, not counted twice
        self.positions: dict[str, int] = {}
        self._now = clock

    # -- Processor contract -----------------------------------------------------------------------
    def handle(self, batch: list[Message]) -> list[Emit]:
        self._flush_outbox(raise_retryable=True)
        emits: list[Emit] = []
        refs: dict[tuple, list[r.ReferenceFeature]] = defaultdict(list)
        preds: dict[tuple, list[r.Prediction]] = defaultdict(list)
        labels: dict[tuple, list[r.Label]] = defaultdict(list)
        order: dict[tuple, None] = {}  # models in order of first appearance
        seen: dict[str, int] = {}
        for m in batch:
            pos = f"{m.topic}/{m.partition}"
            if m.offset <= self.positions.get(pos, -1):
                DROPPED.labels("replayed").inc()  # already counted before the snapshot: skip
                continue
            seen[pos] = max(seen.get(pos, -1), m.offset)
            try:
                rec = envelope.decode(m.value)
            except ValueError as exc:
                DROPPED.labels("undecodable").inc()
                emits.append(self._dead_letter(m, str(exc)))
                continue
            if isinstance(rec, r.Prediction):
                key, bucket = _model_key(rec), preds
            elif isinstance(rec, r.Label):
                key, bucket = _model_key(rec), labels
            elif isinstance(rec, r.ReferenceFeature):
                key, bucket = _model_key(rec), refs
            else:
                DROPPED.labels("unexpected_type").inc()
                emits.append(self._dead_letter(m, f"drift: unexpected record type {type(rec).__name__}"))
                continue
            bucket[key].append(rec)  # type: ignore[index]
            order.setdefault(key)
        now = self._now()
        drift_rows: list[r.DriftResult] = []
        quality_rows: list[r.DataQuality] = []
        for key in order:
            st = self._model(key)
            for ref in refs.get(key, ()):
                self._add_reference(st, ref)
            self._build_references(st)
            if preds.get(key):
                self._add_predictions(st, preds[key])
            if labels.get(key):
                self._add_labels(st, labels[key])
            d, q = self._close_windows(st, now)
            drift_rows += d
            quality_rows += q
        self.positions.update(seen)
        return emits + self._publish(drift_rows, quality_rows)

    def tick(self, now: float) -> list[Emit]:
        self._flush_outbox(raise_retryable=False)
        drift_rows: list[r.DriftResult] = []
        quality_rows: list[r.DataQuality] = []
        for st in self.models.values():
            if not st.dirty or now - st.last_emit < st.cfg.emit_interval_seconds:
                continue
            for k in st.clock.open_windows(st.live_slots()):
                d, q = window_records(st, k, final=False, now=now)
                drift_rows += d
                quality_rows += q
            st.last_emit, st.dirty = now, False
        return self._publish(drift_rows, quality_rows)

    def snapshot(self) -> dict[str, Any]:
        """One key per model version and one per feature, so every value stays small (< 500 KB)."""
        out: dict[str, Any] = {}
        for st in self.models.values():
            ident = [st.tenant, st.project, st.model, st.version]
            out[json.dumps(["drift.model", *ident])] = st.to_dict()
            for name, f in st.features.items():
                out[json.dumps(["drift.feature", *ident, name])] = f.to_dict()
        if self.outbox:
            out[json.dumps(["drift.outbox"])] = [envelope.encode(x).decode() for x in self.outbox]
        if self.positions:
            out[json.dumps(["drift.positions"])] = dict(self.positions)
        return out

    def restore(self, state: dict[str, Any]) -> None:
        self.models.clear()
        self.outbox = []
        self.positions = {}
        features: list[tuple[list[str], dict[str, Any]]] = []
        for key, value in state.items():
            try:
                parts = json.loads(key)
            except ValueError:
                continue
            if not isinstance(parts, list) or not parts:
                continue
            if parts[0] == "drift.model":
                self._restore_model(tuple(parts[1:5]), value)
            elif parts[0] == "drift.feature":
                features.append((parts[1:], value))
            elif parts[0] == "drift.outbox":
                self.outbox = [envelope.decode(x.encode()) for x in value]  # type: ignore[misc]
            elif parts[0] == "drift.positions":
                self.positions = {str(k): int(v) for k, v in value.items()}
        for (tenant, project, model, version, name), value in features:
            st = self.models.get((tenant, project, model, version))
            if st is not None:
                f = FeatureState.from_dict(name, value)
                if st.reset_slots:
                    f.slots.clear()
                    f.events.clear()
                st.features[name] = f

    # -- model state ------------------------------------------------------------------------------
    def _new_state(self, key: tuple[str, str, str, str]) -> ModelState:
        cfg = self.config.for_model(key[1], key[2], key[3])
        clock = Clock(size=cfg.window_seconds, slide=cfg.slide, lateness=cfg.allowed_lateness_seconds)
        return ModelState(*key, cfg=cfg, clock=clock)

    def _model(self, key: tuple[str, str, str, str]) -> ModelState:
        st = self.models.get(key)
        if st is None:
            st = self.models[key] = self._new_state(key)
        if not st.refs_loaded:
            self._load_references(st)
        return st

    def _restore_model(self, key: tuple, d: dict[str, Any]) -> None:
        st = self._new_state(key)  # type: ignore[arg-type]
        same_windows = d["window"][:2] == [st.clock.size, st.clock.slide]
        if same_windows:
            st.clock.load(d["clock"])
            st.events = {int(j): int(n) for j, n in d["events"].items()}
            st.perf = {int(j): PerfSlot.from_dict(p) for j, p in d["perf"].items()}
        else:
            log.warning("drift: window of %s changed from %s to %s; open windows restart",
                        st.key, d["window"][:2], [st.clock.size, st.clock.slide])
            st.reset_slots = True
        st.classes = dict(d["classes"])
        st.volumes = list(d["volumes"])
        st.perf_baseline = dict(d["perf_baseline"])
        st.last_emit = float(d["last_emit"])
        st.dirty = bool(d["dirty"])
        st.refs_loaded = True
        self.models[key] = st  # type: ignore[index]

    def _feature(self, st: ModelState, name: str, kind: str) -> FeatureState | None:
        f = st.features.get(name)
        if f is None:
            f = st.features[name] = FeatureState(name=name, kind=kind)
        elif f.kind != kind:
            DROPPED.labels("kind_mismatch").inc()
            return None
        return f

    # -- references ---------------------------------------------------------------------------------
    def _add_reference(self, st: ModelState, ref: r.ReferenceFeature) -> None:
        EVENTS.labels("reference").inc()
        if st.cfg.reference == "frozen":
            DROPPED.labels("reference_in_frozen_mode").inc()
            return
        values: list[Any] = list(ref.numeric_values) if ref.kind == "numeric" else list(ref.categorical_values)
        f = st.features.get(ref.feature)
        if f is not None and f.kind != ref.kind:
            log.warning("drift: reference of %s/%s is %s but the stream had it %s; replacing",
                        st.key, ref.feature, ref.kind, f.kind)
            f = None
        if f is None:
            f = st.features[ref.feature] = FeatureState(name=ref.feature, kind=ref.kind)
        created = ref.created_at if ref.created_at.tzinfo else ref.created_at.replace(tzinfo=timezone.utc)
        f.add_chunk(created.astimezone(timezone.utc).isoformat(), values)

    def _build_references(self, st: ModelState) -> None:
        for f in st.features.values():
            if f.ref_stale and f.chunks:
                try:
                    if f.build_explicit(st.cfg):
                        DROPPED.labels("windows_reset_by_new_reference").inc()
                except ValueError as exc:
                    log.warning("drift: reference of %s/%s unusable: %s", st.key, f.name, exc)
                    DROPPED.labels("bad_reference").inc()
                    f.ref_stale = False

    def _load_references(self, st: ModelState) -> None:
        """Fallback for a worker that starts without state: references stored by the sink."""
        if self.storage is None or st.cfg.reference == "frozen":
            st.refs_loaded = True
            return
        try:
            _, rows = self.storage.query(
                "SELECT feature, kind, numeric_values, categorical_values, toUnixTimestamp64Micro(created_at) "
                "FROM reference_features WHERE tenant = {t:String} AND project = {p:String} "
                "AND model = {m:String} AND model_version = {v:String} ORDER BY created_at",
                {"t": st.tenant, "p": st.project, "m": st.model, "v": st.version})
        except Exception as exc:  # StorageError: keep going on the stream, try again next batch
            log.warning("drift: cannot load references of %s from ClickHouse: %s", st.key, exc)
            return
        st.refs_loaded = True
        for feature, kind, nums, cats, created in rows:
            f = st.features.get(feature)
            if f is None:
                f = st.features[feature] = FeatureState(name=feature, kind=kind)
            elif f.ref is not None:
                continue
            f.add_chunk(_iso_micros(int(created)), list(nums) if kind == "numeric" else list(cats))

    # -- predictions ------------------------------------------------------------------------------
    def ingest_columns(self, ident: tuple[str, str, str, str], ts: np.ndarray,
                       numeric: Mapping[str, np.ndarray] | None = None,
                       categorical: Mapping[str, np.ndarray] | None = None) -> list[Emit]:
        """Columnar entry point (backfills from ClickHouse, benchmarks): ``ts`` in epoch seconds and
        one array per feature aligned with it (NaN / None = missing); the prediction itself may be
        given as the ``__prediction__`` column. Closes windows and publishes like :meth:`handle`."""
        st = self._model(ident)
        self._build_references(st)
        self._count_columns(st, np.asarray(ts, np.float64), numeric or {}, categorical or {})
        return self._publish(*self._close_windows(st, self._now()))

    def _count_columns(self, st: ModelState, ts: np.ndarray, numeric: Mapping[str, np.ndarray],
                       categorical: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Count one batch of columns into the slots; returns the indices of accepted (not late)
        events, or None when all were accepted. Features the model had but the batch lacks count
        as missing."""
        slots = st.clock.slots_of(ts)
        ok = st.clock.accepted(slots)
        future = ts > time.time() + st.cfg.max_future_seconds
        if future.any():
            DROPPED.labels("future_timestamp").inc(int(future.sum()))
            ok &= ~future
        keep = None
        if not ok.all():
            DROPPED.labels("late").inc(int((~ok & ~future).sum()))
            keep = np.flatnonzero(ok)
            ts, slots = ts[keep], slots[keep]
        n = int(ts.size)
        if n == 0:
            return keep
        u, inv = np.unique(slots, return_inverse=True)
        inv = inv.reshape(-1)
        ev = np.bincount(inv, minlength=u.size)
        for i, j in enumerate(u.tolist()):
            st.events[j] = st.events.get(j, 0) + int(ev[i])
        for kind, cols, blank in (("numeric", numeric, math.nan), ("categorical", categorical, None)):
            names = set(cols) | {x for x, f in st.features.items() if f.kind == kind}
            for name in sorted(names):
                col = cols.get(name)
                f = self._feature(st, name, kind) if col is not None else st.features[name]
                if f is None or f.kind != kind:
                    continue
                if col is None:
                    vals = np.full(n, blank, dtype=np.float64 if kind == "numeric" else object)
                else:
                    vals = np.asarray(col, dtype=np.float64 if kind == "numeric" else object)
                    vals = vals[keep] if keep is not None else vals
                valid = np.isfinite(vals) if kind == "numeric" else vals != None  # noqa: E711 (elementwise)
                self._count(st, f, u, inv, vals, valid)
        st.dirty = True
        st.batch_max_event = max(st.batch_max_event or -math.inf, float(ts.max()))
        return keep

    def _add_predictions(self, st: ModelState, preds: list[r.Prediction]) -> None:
        EVENTS.labels("prediction").inc(len(preds))
        n = len(preds)
        ts = np.fromiter((p.timestamp.timestamp() for p in preds), np.float64, count=n)
        numeric_names: set[str] = set()
        categorical_names: set[str] = set()
        for p in preds:
            numeric_names.update(p.numeric_features)
            categorical_names.update(p.categorical_features)
        numeric = {name: np.fromiter((p.numeric_features.get(name, math.nan) for p in preds), np.float64, count=n)
                   for name in numeric_names}
        categorical = {name: np.array([p.categorical_features.get(name) for p in preds], dtype=object)
                       for name in categorical_names}
        # the prediction itself: numeric (value, else probability) or categorical (class)
        pv = np.fromiter((p.prediction_value if p.prediction_value is not None else
                          (p.probability if p.probability is not None else math.nan) for p in preds),
                         np.float64, count=n)
        existing = st.features.get(PREDICTION)
        if existing.numeric if existing is not None else bool(np.isfinite(pv).any()):
            numeric[PREDICTION] = pv
        else:
            cv = np.array([p.prediction or None for p in preds], dtype=object)
            if existing is not None or (cv != None).any():  # noqa: E711
                categorical[PREDICTION] = cv
        keep = self._count_columns(st, ts, numeric, categorical)
        if keep is not None:
            preds = [preds[i] for i in keep]
            ts = ts[keep]
        # predictions that already carry their label count now; others wait for a Label
        for p, t in zip(preds, ts.tolist()):
            if p.label is not None or p.label_value is not None:
                self._score(st, t, p.prediction, p.prediction_value, p.probability, p.label, p.label_value)
            elif st.cfg.max_pending_predictions:
                st.pending[p.prediction_id] = (t, p.prediction, p.prediction_value, p.probability)
                if len(st.pending) > st.cfg.max_pending_predictions:
                    st.pending.popitem(last=False)
                    DROPPED.labels("pending_prediction_evicted").inc()

    def _count(self, st: ModelState, f: FeatureState, u: np.ndarray, inv: np.ndarray,
               vals: np.ndarray, valid: np.ndarray) -> None:
        if f.ref is None:
            if st.cfg.reference == "explicit" or f.chunks:
                DROPPED.labels("no_reference").inc(int(valid.sum()))
                return
            used = f.collect_frozen(vals, valid, st.cfg)
            if used >= vals.size:
                return
            u2, inv2 = np.unique(u[inv[used:]], return_inverse=True)
            f.update(u2, inv2.reshape(-1), vals[used:], valid[used:], st.cfg)
            return
        f.update(u, inv, vals, valid, st.cfg)

    # -- labels -------------------------------------------------------------------------------------
    def _add_labels(self, st: ModelState, labels: list[r.Label]) -> None:
        EVENTS.labels("label").inc(len(labels))
        missing: list[r.Label] = []
        for lab in labels:
            hit = st.pending.pop(lab.prediction_id, None)
            if hit is None:
                missing.append(lab)
                continue
            self._score(st, hit[0], hit[1], hit[2], hit[3], lab.label, lab.label_value)
        if missing and self.storage is not None:
            missing = self._join_from_storage(st, missing)
        if missing:
            DROPPED.labels("label_without_prediction").inc(len(missing))
        st.dirty = True

    def _join_from_storage(self, st: ModelState, labels: list[r.Label]) -> list[r.Label]:
        """Labels whose prediction is not in memory (restart, eviction): find it in ``predictions``."""
        try:
            _, rows = self.storage.query(
                "SELECT prediction_id, toFloat64(toUnixTimestamp64Micro(timestamp)) / 1e6, prediction, "
                "prediction_value, probability FROM predictions FINAL WHERE project = {p:String} AND "
                "model = {m:String} AND model_version = {v:String} AND prediction_id IN {ids:Array(String)}",
                {"p": st.project, "m": st.model, "v": st.version, "ids": [x.prediction_id for x in labels]})
        except Exception as exc:
            log.warning("drift: label join via ClickHouse failed for %s: %s", st.key, exc)
            return labels
        found = {row[0]: row[1:] for row in rows}
        rest = []
        for lab in labels:
            row = found.get(lab.prediction_id)
            if row is None:
                rest.append(lab)
            elif st.clock.accepted(np.asarray([math.floor(row[0] / st.clock.slide)]))[0]:
                self._score(st, row[0], row[1], row[2], row[3], lab.label, lab.label_value)
            else:
                DROPPED.labels("late_label").inc()
        return rest

    def _score(self, st: ModelState, t: float, pred: str, pred_value: float | None, prob: float | None,
               label: str | None, label_value: float | None) -> None:
        j = math.floor(t / st.clock.slide)
        if not st.clock.accepted(np.asarray([j]))[0]:
            DROPPED.labels("late_label").inc()
            return
        ps = st.perf.get(j)
        if ps is None:
            ps = st.perf[j] = PerfSlot()
        if pred_value is not None and label_value is not None:
            err = pred_value - label_value
            ps.reg_n += 1
            ps.reg_abs += abs(err)
            ps.reg_sq += err * err
            return
        if label is None:
            return
        lc, pc = st.class_code(label), st.class_code(pred)
        if lc is None or pc is None:
            DROPPED.labels("too_many_classes").inc()
            return
        ps.add_confusion(np.asarray([lc]), np.asarray([pc]), len(st.classes))
        if prob is not None and 0.0 <= prob <= 1.0:
            b = min(int(prob * PROB_BINS), PROB_BINS - 1)
            (ps.pos_hist if label == st.cfg.positive_label else ps.neg_hist)[b] += 1

    # -- windows ------------------------------------------------------------------------------------
    def _close_windows(self, st: ModelState, now: float) -> tuple[list[r.DriftResult], list[r.DataQuality]]:
        ts_max, st.batch_max_event = st.batch_max_event, None
        if ts_max is None:
            return [], []
        prev, through = st.clock.advance(ts_max)
        drift: list[r.DriftResult] = []
        quality: list[r.DataQuality] = []
        if through is not None and (prev is None or through > prev):
            for k in st.clock.windows_touching(st.live_slots(), prev, through):
                d, q = window_records(st, k, final=True, now=now)
                drift += d
                quality += q
                volume = sum(st.events.get(j, 0) for j in st.clock.window_slots(k))
                st.volumes = (st.volumes + [volume])[-10:]
            st.evict()
        return drift, quality

    # -- output -------------------------------------------------------------------------------------
    def _publish(self, drift: list[r.DriftResult], quality: list[r.DataQuality]) -> list[Emit]:
        if not drift and not quality:
            return []
        emits = [Emit(topic=OUTPUT_TOPIC, value=envelope.encode(x),
                      key=f"{x.project}/{x.model}/{x.model_version}".encode(),
                      headers={TENANT_HEADER: x.tenant.encode()} if x.tenant else {})
                 for x in (*drift, *quality)]
        for table, rows in (("drift_results", drift), ("data_quality", quality)):
            for x in rows:
                ROWS.labels(table, str(x.is_final).lower()).inc()
        if self.storage is not None:
            self.outbox.extend(drift)
            self.outbox.extend(quality)
            if len(self.outbox) > OUTBOX_MAX_ROWS:
                DROPPED.labels("outbox_overflow").inc(len(self.outbox) - OUTBOX_MAX_ROWS)
                del self.outbox[: len(self.outbox) - OUTBOX_MAX_ROWS]
            self._flush_outbox(raise_retryable=False)
        return emits

    def _flush_outbox(self, raise_retryable: bool) -> None:
        if not self.outbox or self.storage is None:
            return
        try:
            drift = [x for x in self.outbox if isinstance(x, r.DriftResult)]
            quality = [x for x in self.outbox if isinstance(x, r.DataQuality)]
            self.storage.insert_models("drift_results", drift)
            self.storage.insert_models("data_quality", quality)
        except Exception as exc:
            log.warning("drift: %d result rows wait for ClickHouse: %s", len(self.outbox), exc)
            if raise_retryable:
                raise RetryableError(f"drift results cannot be written: {exc}") from exc
            return
        self.outbox = []

    def _dead_letter(self, m: Message, reason: str) -> Emit:
        return Emit(topic=DLQ_TOPIC, value=m.value, key=m.key,
                    headers={**m.headers, ERROR_HEADER: f"drift: {reason}"[:1000].encode(),
                             SOURCE_HEADER: f"{m.topic}/{m.partition}/{m.offset}".encode()})


def _iso_micros(micros: int) -> str:
    """The same ISO form as ``ReferenceFeature.created_at.isoformat()`` on the stream (UTC)."""
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)).isoformat()
