"""Production monitoring: ``MonitoredModel`` logs predictions, late labels and the reference data.

Records are the pydantic models of :mod:`orbitwatch.schemas.records` (``Prediction``,
``Label``, ``ReferenceFeature``), validated when logged so a bad call fails at once with a
clear message. They ride as events (``prediction`` / ``label`` / ``reference``, attribute
``orbitwatch.payload`` = the record's JSON) of ``orbitwatch.kind="prediction.batch"`` spans
that also carry ``orbitwatch.model.name``/``version`` and the project. Like experiment points,
records wait in a bounded buffer (``ORBITWATCH_MAX_BUFFERED_POINTS``) and the shared flusher
thread sends them in spans of ≤ 5000 events / ≈ 1 MB.

Feature typing: numbers (not bools) → ``numeric_features``; str, bool, enum/category values →
``categorical_features``; ``None``/NaN → ``missing_features``. The reference data
(:meth:`MonitoredModel.set_reference`) is typed per column from its dtype; missing values are
left out of the reference; big columns are split over several ``reference`` events sharing one
``created_at``, each with int attributes ``chunk`` (0-based) and ``chunks`` (total) so the consumer
can reassemble them in order (by model, version, feature, created_at) and knows when it has all.
"""
from __future__ import annotations

import collections
import datetime as _dt
import enum
import logging
import math
import numbers
import os
import sys
import threading
import time
from typing import Any, Iterable, Mapping

from orbitwatch import transport as _transport_mod
from orbitwatch import wire
from orbitwatch.schemas import attributes as A

log = logging.getLogger("orbitwatch")

EVENTS_PER_SPAN = 5000
BYTES_PER_SPAN = wire.MAX_SPAN_BYTES
REFERENCE_CHUNK = 20_000  # values per reference event (≈ 400 KB of JSON at most)


def _utc(ts: Any) -> _dt.datetime:
    if ts is None:
        return _dt.datetime.now(_dt.timezone.utc)
    if isinstance(ts, _dt.datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=_dt.timezone.utc)
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        return _dt.datetime.fromtimestamp(float(ts), _dt.timezone.utc)
    to_py = getattr(ts, "to_pydatetime", None)  # pandas Timestamp
    if callable(to_py):
        return _utc(to_py())
    raise TypeError(f"timestamp must be a datetime or epoch seconds, got {type(ts).__name__}")


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return math.isnan(v)
    pandas = sys.modules.get("pandas")
    if pandas is not None and (v is pandas.NA or v is pandas.NaT):
        return True
    try:
        return bool(v != v)  # numpy.nan, numpy.float32('nan'), ...
    except Exception:  # noqa: BLE001
        return False


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and not _is_bool_like(v)


def _is_bool_like(v: Any) -> bool:
    return type(v).__name__ in ("bool_", "bool") or isinstance(v, bool)


def split_features(features: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """(numeric, categorical, missing) per the rules in the module docstring."""
    if not isinstance(features, Mapping):
        raise TypeError(f"features must be a dict of name → value, got {type(features).__name__}")
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    missing: list[str] = []
    for name, value in features.items():
        name = str(name)
        if _is_missing(value):
            missing.append(name)
        elif _is_number(value):
            f = float(value)
            if math.isinf(f):
                raise ValueError(f"feature {name!r} is infinite")
            numeric[name] = f
        elif isinstance(value, (str, bool)) or _is_bool_like(value):
            categorical[name] = str(value)
        elif isinstance(value, enum.Enum):
            categorical[name] = str(value.value)
        else:
            raise TypeError(f"feature {name!r} must be a number, string, bool or None; got {type(value).__name__}")
    return numeric, categorical, missing


def _target(value: Any) -> tuple[str, float | None]:
    """A prediction or label as (text, numeric value or None)."""
    if _is_bool_like(value):
        return str(value), float(bool(value))
    if _is_number(value):
        f = float(value)
        return (str(int(f)) if f.is_integer() and isinstance(value, numbers.Integral) else repr(f)), f
    if value is None:
        return "", None
    return str(value), None


def _column_values(values: Any) -> list[Any]:
    tolist = getattr(values, "tolist", None)
    if callable(tolist):
        return list(tolist())
    return list(values)


def _column_kind(values: Any, py_values: list[Any]) -> str:
    dtype = getattr(values, "dtype", None)
    if dtype is not None:
        kind = getattr(dtype, "kind", None)
        if kind in ("i", "u", "f"):
            return "numeric"
        if kind == "b" or str(dtype) in ("category", "string", "boolean", "object", "str") or kind in ("O", "U", "S"):
            present = [v for v in py_values if not _is_missing(v)]
            if str(dtype) == "object" and present and all(_is_number(v) for v in present):
                return "numeric"
            return "categorical"
        if str(dtype).startswith(("Int", "UInt", "Float")):  # pandas nullable numbers
            return "numeric"
    present = [v for v in py_values if not _is_missing(v)]
    return "numeric" if present and all(_is_number(v) for v in present) else "categorical"


class MonitoredModel:
    """A deployed model version whose inputs, outputs and outcomes are monitored for drift."""

    def __init__(self, name: str, version: str = "", *, project_name: str | None = None,
                 api_key: str | None = None) -> None:
        if not name:
            raise ValueError("MonitoredModel needs a model name")
        transport = _transport_mod.get_transport()
        self.name = str(name)
        self.version = str(version)
        self.project = project_name or transport.project
        self.api_key = api_key or transport.settings.api_key
        self._buf: collections.deque[tuple[str, int, Any, dict[str, int] | None]] = collections.deque()
        self._max = int(os.environ.get("ORBITWATCH_MAX_BUFFERED_POINTS", "500000"))
        self._drain_lock = threading.Lock()
        transport.register(self)

    def __repr__(self) -> str:
        return f"MonitoredModel(name={self.name!r}, version={self.version!r}, project={self.project!r})"

    def log_prediction(self, prediction_id: str, features: Mapping[str, Any], prediction: Any,
                       probability: float | None = None, label: Any = None, timestamp: Any = None) -> None:
        """Record one prediction (and its label if already known). Raises on malformed input."""
        from orbitwatch.schemas.records import Prediction
        numeric, categorical, missing = split_features(features)
        text, value = _target(prediction)
        ts = _utc(timestamp)
        rec = Prediction(project=self.project, model=self.name, model_version=self.version,
                         prediction_id=str(prediction_id), timestamp=ts, numeric_features=numeric,
                         categorical_features=categorical, missing_features=missing, prediction=text,
                         prediction_value=value,
                         probability=None if probability is None else float(probability))
        if label is not None:
            rec.label, rec.label_value = _target(label)
            rec.labeled_at = ts
        self._append("prediction", rec)

    def log_label(self, prediction_id: str, label: Any, timestamp: Any = None) -> None:
        """Record the ground truth of an earlier prediction (joined by ``prediction_id``)."""
        from orbitwatch.schemas.records import Label
        if label is None:
            raise ValueError("label must not be None")
        text, value = _target(label)
        self._append("label", Label(project=self.project, model=self.name, model_version=self.version,
                                    prediction_id=str(prediction_id), label=text, label_value=value,
                                    timestamp=_utc(timestamp)))

    def set_reference(self, data: Any) -> int:
        """Send the reference (training) distribution: a pandas DataFrame or a dict of arrays/lists.

        Returns the number of ``reference`` events queued. Column kinds come from dtypes
        (numbers → numeric; bool/str/category/object → categorical); missing values are skipped.
        """
        from orbitwatch.schemas.records import ReferenceFeature
        columns: Iterable[tuple[str, Any]]
        if hasattr(data, "columns") and hasattr(data, "__getitem__"):  # DataFrame
            columns = ((str(c), data[c]) for c in data.columns)
        elif isinstance(data, Mapping):
            columns = ((str(k), v) for k, v in data.items())
        else:
            raise TypeError(f"set_reference takes a pandas DataFrame or a dict of arrays, got {type(data).__name__}")
        created = _dt.datetime.now(_dt.timezone.utc)
        records = []
        for feature, values in columns:
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
                raise TypeError(f"reference column {feature!r} must be an array or list")
            py = _column_values(values)
            kind = _column_kind(values, py)
            present = [v for v in py if not _is_missing(v)]
            if kind == "numeric":
                try:
                    vals: list[Any] = [float(v) for v in present]
                except (TypeError, ValueError) as exc:
                    raise TypeError(f"reference column {feature!r} mixes numbers and non-numbers") from exc
                vals = [v for v in vals if math.isfinite(v)]
            else:
                vals = [str(v) for v in present]
            if not vals:
                log.warning("orbitwatch: reference column %r has no values; skipped", feature)
                continue
            chunks = (len(vals) + REFERENCE_CHUNK - 1) // REFERENCE_CHUNK
            for index, i in enumerate(range(0, len(vals), REFERENCE_CHUNK)):
                chunk = vals[i:i + REFERENCE_CHUNK]
                records.append((ReferenceFeature(
                    project=self.project, model=self.name, model_version=self.version, feature=feature, kind=kind,
                    numeric_values=chunk if kind == "numeric" else [],
                    categorical_values=chunk if kind == "categorical" else [], created_at=created),
                    {A.REFERENCE_CHUNK: index, A.REFERENCE_CHUNKS: chunks}))
        for rec, extra in records:
            self._append("reference", rec, force=True, extra=extra)
        return len(records)

    def flush(self, timeout: float | None = 30.0) -> bool:
        return _transport_mod.flush(timeout)

    # -- internals ------------------------------------------------------------------------------
    def _append(self, event: str, record: Any, force: bool = False, extra: dict[str, int] | None = None) -> None:
        buf = self._buf
        if len(buf) >= self._max and not force:
            _transport_mod.STATS.add("dropped_points", 1, f"monitoring buffer of {self} full; dropping records")
            return
        buf.append((event, time.time_ns(), record, extra))
        if len(buf) >= EVENTS_PER_SPAN:
            _transport_mod.get_transport().wake()

    def _drain(self, transport: "_transport_mod.Transport", final: bool) -> None:
        if not self._buf:
            return
        with self._drain_lock:
            buf = self._buf
            pipe = transport.pipeline(self.api_key)
            attrs = {A.KIND: "prediction.batch", A.MODEL_NAME: self.name, A.MODEL_VERSION: self.version,
                     A.PROJECT: self.project}
            while buf:
                if not pipe.bulk_has_room():
                    if not final:
                        break
                    pipe.bulk.force_flush()
                parts: list[bytes] = []
                size = 0
                first_ts = buf[0][1]
                while buf and len(parts) < EVENTS_PER_SPAN and size < BYTES_PER_SPAN:
                    event, ts, record, extra = buf.popleft()
                    attrs_ = {A.PAYLOAD: record.model_dump_json()}
                    if extra:
                        attrs_.update(extra)
                    part = wire.event(event, ts, attrs_)
                    parts.append(part)
                    size += len(part)
                pipe.emit_encoded(self.project, "prediction.batch", None, attrs, first_ts, time.time_ns(),
                                  b"".join(parts), len(parts))
