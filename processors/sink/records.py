"""SDK record spans (``orbitwatch.kind``) → experiment, monitoring and feedback tables.

The SDK carries its records on ordinary OTLP spans (see :mod:`orbitwatch.schemas.attributes`).
:class:`RecordBatch` collects them while a batch is decoded and, in :meth:`RecordBatch.finalise`,
turns them into table rows. ``finalise`` is the only place that reads ClickHouse, and only for
the rare joins that need the past:

* late labels — every label is written to ``prediction_labels``; the matching ``predictions``
  row is re-written with the label filled and ``version`` = label time (µs), so
  ``predictions FINAL`` shows the labelled row (an unlabelled replay has version 0 and loses).
  A label that arrives before its prediction is found in ``prediction_labels`` when the
  prediction arrives, and applied then.
* experiment tags — ``tag`` events and re-sent experiment spans union their tags with the stored row.
* reference chunks — a reference feature too big for one event arrives as events with
  attributes ``chunk`` (0-based) and ``chunks`` (total); parts wait in processor state (so they
  survive a restart via the runner's snapshot) until all arrived, then one row is written.

Every row value is derived from the input (event/span times, not "now"), so re-processing the
same messages produces identical rows: replays are invisible under ``FINAL`` and dropped by the
insert deduplication token.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from orbitwatch.schemas import attributes as A
from orbitwatch.schemas import records as r

EXPERIMENT_COLUMNS = ("experiment_id", "tenant", "project", "workspace", "name", "status", "started_at",
                      "ended_at", "tags", "system", "updated_at")
PARAM_COLUMNS = ("experiment_id", "name", "value", "timestamp")
METRIC_COLUMNS = ("experiment_id", "name", "step", "epoch", "value", "timestamp", "seq")
ASSET_COLUMNS = ("experiment_id", "name", "kind", "uri", "size", "sha256", "metadata", "timestamp")
PREDICTION_COLUMNS = ("tenant", "project", "model", "model_version", "prediction_id", "timestamp",
                      "numeric_features", "categorical_features", "missing_features", "prediction",
                      "prediction_value", "probability", "label", "label_value", "labeled_at", "version")
LABEL_COLUMNS = ("tenant", "project", "model", "model_version", "prediction_id", "label", "label_value", "timestamp")
REFERENCE_COLUMNS = ("tenant", "project", "model", "model_version", "feature", "kind", "numeric_values",
                     "categorical_values", "created_at")
EVAL_COLUMNS = ("tenant", "project", "entity_type", "entity_id", "trace_id", "name", "value", "reason", "source",
                "category", "annotator", "scorer_version", "rule", "timestamp")

_STATUSES = ("running", "finished", "failed")


class RecordError(ValueError):
    """One SDK record could not be decoded; it goes to the DLQ with this reason, the rest is kept."""


def _dt_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def _str(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def model_key(project: str, model: str, version: str) -> str:
    return f"{project}/{model}/{version}"


class RecordBatch:
    """Rows from the SDK record spans of one sink batch."""

    def __init__(self, tenant_default: str = "") -> None:
        self.experiments: dict[str, dict[str, Any]] = {}
        self.tag_additions: dict[str, dict[str, Any]] = {}  # experiment_id -> {"tags": [...], "ts": ns, ...}
        self.params: list[tuple] = []
        self.metrics: list[tuple] = []
        self.others: list[tuple] = []
        self.assets: list[tuple] = []
        self.predictions: dict[tuple, r.Prediction] = {}
        self.labels: dict[tuple, r.Label] = {}
        self.references: list[tuple[r.ReferenceFeature, int, int]] = []
        self.evals: list[r.EvalScore] = []
        self.errors: list[tuple[str, bytes]] = []  # (reason, offending payload) → DLQ
        self._tenant = tenant_default

    # -- collection (called by the decoder for every span with orbitwatch.kind) ----------------
    def on_record(self, tenant: str, header_project: str, kind: str, span: Any, attrs: dict[str, str],
                  res: dict[str, str], project: str) -> None:
        if kind == "experiment":
            self._experiment(tenant, span, attrs, res, project)
        elif kind == "experiment.batch":
            self._experiment_batch(span, attrs)
        elif kind == "prediction.batch":
            self._prediction_batch(tenant, header_project, span, attrs, project)
        elif kind == "feedback":
            self._feedback(tenant, span, attrs, project)
        elif kind == "feedback_scores":  # orbitwatch.feedback_scores on an ordinary span
            self._span_feedback(tenant, span, attrs, project)
        else:
            self.errors.append((f"unknown orbitwatch.kind {kind!r} on span {span.span_id.hex()}",
                                json.dumps(attrs).encode()))

    def _experiment(self, tenant: str, span: Any, attrs: dict[str, str], res: dict[str, str], project: str) -> None:
        eid = attrs.get(A.EXPERIMENT_ID, "")
        if not eid:
            self.errors.append(("experiment span without orbitwatch.experiment.id", json.dumps(attrs).encode()))
            return
        status = attrs.get(A.EXPERIMENT_STATUS, "running")
        if status not in _STATUSES:
            status = "running"
        started = _int(attrs.get(A.EXPERIMENT_STARTED_AT), span.start_time_unix_nano)
        ended_raw = attrs.get(A.EXPERIMENT_ENDED_AT)
        ended = _dt_ns(_int(ended_raw)) if ended_raw else None
        try:
            tags = [str(t) for t in json.loads(attrs.get(A.EXPERIMENT_TAGS) or "[]")]
            system_obj = json.loads(attrs.get(A.EXPERIMENT_SYSTEM) or "{}")
            system = {str(k): _str(v) for k, v in system_obj.items()}
        except (ValueError, AttributeError, TypeError) as exc:
            self.errors.append((f"experiment {eid}: bad tags/system JSON: {exc}", json.dumps(attrs).encode()))
            return
        updated = span.end_time_unix_nano or span.start_time_unix_nano
        row = {"experiment_id": eid, "tenant": tenant, "project": project,
               "workspace": attrs.get(A.WORKSPACE) or res.get(A.WORKSPACE, ""),
               "name": attrs.get(A.EXPERIMENT_NAME, ""), "status": status, "started_at": _dt_ns(started),
               "ended_at": ended, "tags": tags, "system": system, "updated_at": _dt_ns(updated), "_ns": updated}
        prev = self.experiments.get(eid)
        if prev is None or prev["_ns"] <= updated:
            if prev is not None:
                row["tags"] = _union(prev["tags"], row["tags"])
            self.experiments[eid] = row
        else:
            prev["tags"] = _union(prev["tags"], tags)

    def _experiment_batch(self, span: Any, attrs: dict[str, str]) -> None:
        from orbitwatch.processors.sink.decode import attrs_to_py
        eid = attrs.get(A.EXPERIMENT_ID, "")
        if not eid:
            self.errors.append(("experiment.batch span without orbitwatch.experiment.id",
                                json.dumps(attrs).encode()))
            return
        for ev in span.events:
            ea = attrs_to_py(ev.attributes)
            ts_us = ev.time_unix_nano // 1000
            name = ev.name
            if name == A.EVENT_METRIC:
                try:
                    value = float(ea["value"])
                    self.metrics.append((eid, str(ea["name"]), _int(ea.get("step")), _int(ea.get("epoch")),
                                         value, ts_us, max(0, _int(ea.get("seq")))))
                except (KeyError, TypeError, ValueError) as exc:
                    self.errors.append((f"experiment {eid}: bad metric event ({exc!r})", json.dumps(ea).encode()))
            elif name == A.EVENT_PARAM or name == A.EVENT_OTHER:
                if "name" not in ea:
                    self.errors.append((f"experiment {eid}: {name} event without name", json.dumps(ea).encode()))
                    continue
                row = (eid, str(ea["name"]), _str(ea.get("value")), ts_us)
                (self.params if name == A.EVENT_PARAM else self.others).append(row)
            elif name == A.EVENT_TAG:
                tag = ea.get("name", ea.get("value", ea.get("tag")))
                if tag is None:
                    self.errors.append((f"experiment {eid}: tag event without name", json.dumps(ea).encode()))
                    continue
                add = self.tag_additions.setdefault(eid, {"tags": [], "ns": 0})
                add["tags"] = _union(add["tags"], [str(tag)])
                add["ns"] = max(add["ns"], ev.time_unix_nano)
            elif name == A.EVENT_ASSET:
                if "name" not in ea or "uri" not in ea:
                    self.errors.append((f"experiment {eid}: asset event needs name and uri",
                                        json.dumps(ea).encode()))
                    continue
                meta = ea.get("metadata") or {}
                if isinstance(meta, str):
                    try:
                        meta = json.loads(meta)
                    except ValueError:
                        meta = {"value": meta}
                kind = ea.get("kind", "asset")
                self.assets.append((eid, str(ea["name"]), kind if kind in ("asset", "model") else "asset",
                                    str(ea["uri"]), max(0, _int(ea.get("size"))), str(ea.get("sha256", "")),
                                    {str(k): _str(v) for k, v in dict(meta).items()}, ts_us))
            else:
                self.errors.append((f"experiment {eid}: unknown event {name!r}", json.dumps(ea).encode()))

    def _prediction_batch(self, tenant: str, header_project: str, span: Any, attrs: dict[str, str],
                          project: str) -> None:
        from orbitwatch.processors.sink.decode import attrs_to_py
        for ev in span.events:
            ea = attrs_to_py(ev.attributes)
            payload = ea.get(A.PAYLOAD)
            model_cls = {"prediction": r.Prediction, "label": r.Label, "reference": r.ReferenceFeature}.get(ev.name)
            if model_cls is None or not isinstance(payload, str):
                self.errors.append((f"prediction.batch event {ev.name!r} is not prediction/label/reference "
                                    f"with a JSON {A.PAYLOAD}", json.dumps(ea, default=str).encode()))
                continue
            try:
                rec = model_cls.model_validate_json(payload)
            except ValidationError as exc:
                self.errors.append((f"invalid {ev.name} payload: {_first_error(exc)}", payload.encode()))
                continue
            # Tenant only from the header; project: header > record > span/resource/service.
            rec.tenant = tenant
            rec.project = header_project or rec.project or project
            if isinstance(rec, r.Prediction):
                self.predictions[(rec.project, rec.model, rec.model_version, rec.prediction_id)] = rec
            elif isinstance(rec, r.Label):
                key = (rec.project, rec.model, rec.model_version, rec.prediction_id)
                prev = self.labels.get(key)
                if prev is None or prev.timestamp <= rec.timestamp:
                    self.labels[key] = rec
            else:
                self.references.append((rec, _int(ea.get("chunk"), 0), max(1, _int(ea.get("chunks"), 1))))

    def _feedback(self, tenant: str, span: Any, attrs: dict[str, str], project: str) -> None:
        payload = attrs.get(A.PAYLOAD, "")
        try:
            items = json.loads(payload)
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list):
                raise ValueError("expected a JSON list of scores")
        except ValueError as exc:
            self.errors.append((f"feedback span: bad {A.PAYLOAD}: {exc}", payload.encode()))
            return
        default_entity = span.parent_span_id.hex() or span.span_id.hex()
        for item in items:
            self._score(tenant, project, item, default_entity, span.trace_id.hex(), span.end_time_unix_nano)

    def _span_feedback(self, tenant: str, span: Any, attrs: dict[str, str], project: str) -> None:
        raw = attrs.get(A.FEEDBACK_SCORES, "")
        try:
            items = json.loads(raw)
            if not isinstance(items, list):
                raise ValueError("expected a JSON list")
        except ValueError as exc:
            self.errors.append((f"span {span.span_id.hex()}: bad {A.FEEDBACK_SCORES}: {exc}", raw.encode()))
            return
        for item in items:
            self._score(tenant, project, item, span.span_id.hex(), span.trace_id.hex(), span.end_time_unix_nano)

    def _score(self, tenant: str, project: str, item: Any, entity: str, trace_id: str, ns: int) -> None:
        if not isinstance(item, dict):
            self.errors.append(("feedback score is not an object", json.dumps(item).encode()))
            return
        data = dict(item)
        data.setdefault("entity_id", entity)
        data.setdefault("trace_id", trace_id)
        data.setdefault("timestamp", _dt_ns(ns).isoformat())
        data["tenant"] = tenant
        data["project"] = project
        data["source"] = "sdk"
        try:
            self.evals.append(r.EvalScore.model_validate(data))
        except ValidationError as exc:
            self.errors.append((f"invalid feedback score: {_first_error(exc)}", json.dumps(item).encode()))

    # -- finalise: rows per table (reads ClickHouse for the late joins) --------------------------
    def empty(self) -> bool:
        return not (self.experiments or self.tag_additions or self.params or self.metrics or self.others
                    or self.assets or self.predictions or self.labels or self.references or self.evals)

    def finalise(self, storage: Any, ref_state: dict[str, Any]) -> tuple[dict[str, list[tuple]], list[Any]]:
        """Rows per table, and the records to re-publish on ``orbitwatch.predictions``.

        ``ref_state`` (pending reference chunks) is updated in place; the caller passes a copy and
        keeps it only once the inserts succeeded.
        """
        rows: dict[str, list[tuple]] = {}
        publish: list[Any] = []
        if self.experiments or self.tag_additions:
            rows["experiments"] = self._experiment_rows(storage)
        if self.params:
            rows["experiment_params"] = self.params
        if self.metrics:
            rows["experiment_metrics"] = self.metrics
        if self.others:
            rows["experiment_others"] = self.others
        if self.assets:
            rows["experiment_assets"] = self.assets
        if self.predictions or self.labels:
            pred_rows, label_rows = self._prediction_rows(storage)
            rows["predictions"] = pred_rows
            if label_rows:
                rows["prediction_labels"] = label_rows
            publish.extend(self.predictions.values())
            publish.extend(self.labels.values())
        if self.references:
            done = self._reference_rows(ref_state)
            if done:
                rows["reference_features"] = [tuple(getattr(f, c) for c in REFERENCE_COLUMNS) for f in done]
                publish.extend(done)
        if self.evals:
            rows["eval_scores"] = [tuple(getattr(e, c) for c in EVAL_COLUMNS) for e in self.evals]
        return rows, publish

    def _experiment_rows(self, storage: Any) -> list[tuple]:
        ids = sorted(set(self.experiments) | set(self.tag_additions))
        stored = {row["experiment_id"]: row for row in storage.query_dicts(
            "SELECT experiment_id, tenant, project, workspace, name, status, started_at, ended_at, tags, system, "
            "updated_at FROM experiments FINAL WHERE experiment_id IN %(ids)s", {"ids": tuple(ids)})}
        out = []
        for eid in ids:
            row = self.experiments.get(eid)
            old = stored.get(eid)
            if row is None:
                if old is None:
                    # tags for an experiment whose span has not arrived: keep them in a minimal row;
                    # the experiment span, when it arrives, unions them in.
                    add = self.tag_additions[eid]
                    row = {"experiment_id": eid, "tenant": "", "project": "", "workspace": "", "name": "",
                           "status": "running", "started_at": _dt_ns(add["ns"]), "ended_at": None, "tags": [],
                           "system": {}, "updated_at": _dt_ns(add["ns"])}
                else:
                    row = dict(old)
                    row["updated_at"] = _bump(old["updated_at"])
            else:
                row = dict(row)
                if old is not None:
                    row["tags"] = _union(list(old["tags"]), row["tags"])
                    old_upd = _aware(old["updated_at"])
                    if old_upd >= row["updated_at"]:
                        # the stored row is newer (out-of-order re-send): keep it, with the union of tags
                        row = dict(old, tags=row["tags"], updated_at=_bump(old_upd))
            if eid in self.tag_additions:
                row["tags"] = _union(row["tags"], self.tag_additions[eid]["tags"])
            out.append(tuple(row[c] for c in EXPERIMENT_COLUMNS))
        return out

    def _prediction_rows(self, storage: Any) -> tuple[list[tuple], list[tuple]]:
        labels = dict(self.labels)
        missing = [k for k in self.predictions if k not in labels]
        if missing:
            for row in storage.query_dicts(
                    "SELECT tenant, project, model, model_version, prediction_id, label, label_value, timestamp "
                    "FROM prediction_labels FINAL WHERE prediction_id IN %(ids)s",
                    {"ids": tuple(sorted({k[3] for k in missing}))}):
                key = (row["project"], row["model"], row["model_version"], row["prediction_id"])
                if key in self.predictions and key not in labels:
                    labels[key] = r.Label(**{**row, "timestamp": _aware(row["timestamp"])})
        preds = dict(self.predictions)
        orphan = [k for k in self.labels if k not in preds]
        if orphan:
            cols = ", ".join(c for c in PREDICTION_COLUMNS if c != "version")
            for row in storage.query_dicts(f"SELECT {cols} FROM predictions FINAL WHERE prediction_id IN %(ids)s",
                                           {"ids": tuple(sorted({k[3] for k in orphan}))}):
                key = (row["project"], row["model"], row["model_version"], row["prediction_id"])
                if key in self.labels and key not in preds:
                    row["timestamp"] = _aware(row["timestamp"])
                    row["labeled_at"] = None
                    preds[key] = r.Prediction(**row)
        pred_rows = []
        for key, p in preds.items():
            lab = labels.get(key)
            version = 0
            if lab is not None:
                p = p.model_copy(update={"label": lab.label, "label_value": lab.label_value,
                                         "labeled_at": lab.timestamp})
                version = int(_aware(lab.timestamp).timestamp() * 1_000_000)
            elif p.label is not None:  # labelled at prediction time
                version = int(_aware(p.labeled_at or p.timestamp).timestamp() * 1_000_000)
            pred_rows.append(tuple(getattr(p, c) for c in PREDICTION_COLUMNS[:-1]) + (version,))
        label_rows = [tuple(getattr(lab, c) for c in LABEL_COLUMNS) for lab in self.labels.values()]
        return pred_rows, label_rows

    def _reference_rows(self, state: dict[str, Any]) -> list[r.ReferenceFeature]:
        done: list[r.ReferenceFeature] = []
        for rec, chunk, chunks in self.references:
            if chunks <= 1:
                done.append(rec)
                continue
            key = "|".join((rec.project, rec.model, rec.model_version, rec.feature, rec.created_at.isoformat()))
            entry = state.setdefault(key, {"chunks": chunks, "parts": {}})
            entry["parts"][str(chunk)] = rec.model_dump(mode="json")
            if len(entry["parts"]) >= entry["chunks"]:
                parts = [r.ReferenceFeature.model_validate(entry["parts"][str(i)])
                         for i in range(entry["chunks"]) if str(i) in entry["parts"]]
                merged = parts[0].model_copy(update={
                    "numeric_values": [v for p in parts for v in p.numeric_values],
                    "categorical_values": [v for p in parts for v in p.categorical_values]})
                done.append(merged)
                del state[key]
        # several whole (unchunked) sets for one feature in one batch: the newest wins (same as FINAL)
        return done


def _union(a: list[str], b: list[str]) -> list[str]:
    seen = dict.fromkeys(a)
    for t in b:
        seen.setdefault(t)
    return list(seen)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _bump(dt: datetime) -> datetime:
    from datetime import timedelta
    return _aware(dt) + timedelta(microseconds=1)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ())) or "record"
    return f"{loc}: {err.get('msg', 'invalid')}"
