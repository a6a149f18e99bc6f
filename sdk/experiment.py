"""Comet-compatible experiment tracking: ``Experiment`` and ``start``, carried on OTLP spans.

Migrating from Comet is a one-line change (``from orbitwatch import Experiment``): the
constructor takes Comet's arguments and the ``log_*``/``set_*``/``end`` methods keep their names.

Mapping onto OpenTelemetry (the contract with the sink, see :mod:`orbitwatch.schemas.attributes`):

* An experiment is one trace. A short span ``orbitwatch.kind="experiment"`` carries the
  experiment row (id, name, status, started/ended, tags, system info, project, workspace);
  it is the trace's root at start and is sent again (as a child of the root) on every status,
  name or tag change. The sink upserts by experiment id; the newest span wins.
* Points (metrics, params, others, tags, assets) ride as span *events* of
  ``orbitwatch.kind="experiment.batch"`` spans, ≤ 5000 events (≈ 1 MB) each. Event time is the
  time the point was logged; every metric point has a per-experiment ``seq`` so none is
  ever merged away.

Why it is fast: ``log_metric`` only validates and appends a tuple to a bounded deque
(~1 µs); the shared flusher thread (:mod:`orbitwatch.transport`) builds spans every
``ORBITWATCH_FLUSH_INTERVAL`` (0.5 s) while points are pending, so points reach the gateway
within about a second even in runs of many hours. When the buffer
(``ORBITWATCH_MAX_BUFFERED_POINTS``, default 500 000) is full because the gateway is
unreachable, new points are dropped and counted (``orbitwatch.transport.stats()``), never blocking.
"""
from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api

from orbitwatch import transport as _transport_mod
from orbitwatch import wire
from orbitwatch.schemas import attributes as A
from orbitwatch.serialization import dumps, truncate

log = logging.getLogger("orbitwatch")

EVENTS_PER_SPAN = 5000
BYTES_PER_SPAN = wire.MAX_SPAN_BYTES
MAX_VALUE_CHARS = 32_768  # param/other values longer than this are truncated (with a marker)
_time_ns = time.time_ns

# Comet constructor options we accept so existing code runs; they change nothing here.
COMET_OPTIONS = frozenset({
    "log_code", "log_graph", "auto_param_logging", "auto_metric_logging", "parse_args", "auto_output_logging",
    "log_env_details", "log_git_metadata", "log_git_patch", "log_env_gpu", "log_env_host", "display_summary",
    "log_env_cpu", "log_env_network", "log_env_disk", "display_summary_level", "optimizer_data",
    "auto_weight_logging", "auto_log_co2", "auto_metric_step_rate", "auto_histogram_tensorboard_logging",
    "auto_histogram_epoch_rate", "auto_histogram_weight_logging", "auto_histogram_gradient_logging",
    "auto_histogram_activation_logging", "distributed_node_identifier", "mode", "online", "experiment_config",
})

_running: set["Experiment"] = set()  # strong refs: an experiment lives until end(), even if unreferenced
_running_lock = threading.Lock()


def _flatten(d: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            yield from _flatten(v, key)
        else:
            yield key, v


def _value_str(value: Any) -> str:
    text = value if isinstance(value, str) else dumps(value)
    if len(text) > MAX_VALUE_CHARS:
        text, _ = truncate(text, MAX_VALUE_CHARS)
        _transport_mod.STATS.add("truncated_values", 1, f"a parameter/other value was longer than "
                                 f"{MAX_VALUE_CHARS} characters and was truncated")
    return text


class Experiment:
    """One training run. Use as a context manager or call :meth:`end` (also done at exit)."""

    def __init__(self, api_key: str | None = None, project_name: str | None = None, workspace: str | None = None,
                 *, experiment_key: str | None = None, experiment_name: str | None = None,
                 tags: Iterable[str] | None = None, disabled: bool = False, **comet_options: Any) -> None:
        unknown = set(comet_options) - COMET_OPTIONS
        if unknown:
            raise TypeError(f"Experiment() got unexpected arguments: {', '.join(sorted(unknown))}")
        if experiment_key is not None:
            key = str(experiment_key)
            if not key.isalnum() or not 32 <= len(key) <= 50:
                raise ValueError("experiment_key must be 32-50 alphanumeric characters (Comet's rule)")
            self.id = key
        else:
            self.id = uuid.uuid4().hex
        transport = _transport_mod.get_transport()
        self.api_key = api_key or transport.settings.api_key
        self.project = project_name or os.environ.get("COMET_PROJECT_NAME") or transport.project
        self.workspace = workspace or os.environ.get("COMET_WORKSPACE") or ""
        self.name = experiment_name or f"{_transport_mod.default_service_name('default')}-{self.id[:8]}"
        self.status = "running"
        self.disabled = disabled
        self.started_at = _time_ns()
        self.ended_at: int | None = None
        self.tags: list[str] = []
        for t in tags or ():
            if str(t) not in self.tags:
                self.tags.append(str(t))
        self._step = 0
        self._epoch = 0
        self._prefix = ""
        self._seq = itertools.count()
        self._buf: collections.deque[tuple[Any, ...]] = collections.deque()
        self._max_points = 0 if disabled else int(os.environ.get("ORBITWATCH_MAX_BUFFERED_POINTS", "500000"))
        self._wake_at = EVENTS_PER_SPAN
        self._lock = threading.Lock()  # status changes
        self._drain_lock = threading.Lock()  # the flusher and end() may drain at once
        self._warned: set[str] = set()
        self._parent_ctx: otel_context.Context | None = None
        self._root: trace_api.SpanContext | None = None  # the first status span: parent of all others
        self.system: dict[str, str] = {}
        if disabled:
            return
        from orbitwatch.system_info import system_info
        try:
            self.system = dict(system_info())
        except Exception:  # noqa: BLE001 - never fail a run because of metadata
            log.debug("orbitwatch: system info failed", exc_info=True)
        with _running_lock:
            _running.add(self)
        self._emit_status()
        transport.register(self)

    # -- identity (Comet names) ---------------------------------------------------------------
    def get_key(self) -> str:
        return self.id

    def get_name(self) -> str:
        return self.name

    @property
    def url(self) -> str | None:
        return None

    def __repr__(self) -> str:
        return f"Experiment(id={self.id!r}, name={self.name!r}, project={self.project!r}, status={self.status!r})"

    # -- points (hot path: validate, append, return) ------------------------------------------
    def log_metric(self, name: str, value: Any, step: int | None = None, epoch: int | None = None,
                   include_context: bool = True) -> None:
        """Record one metric point; every point is kept (no aggregation)."""
        buf = self._buf
        if len(buf) >= self._max_points:
            return self._reject(1)
        try:
            v = float(value)
        except (TypeError, ValueError):
            return self._non_numeric(name, value)
        if step is None:
            step = self._step
        elif type(step) is not int:
            step = int(step)
        if epoch is None:
            epoch = self._epoch
        elif type(epoch) is not int:
            epoch = int(epoch)
        if self._prefix and include_context:
            name = self._prefix + name
        buf.append((A.EVENT_METRIC, _time_ns(), name, v, step, epoch, next(self._seq)))
        if len(buf) >= self._wake_at:
            self._wake()

    def log_metrics(self, dic: Mapping[str, Any], prefix: str | None = None, step: int | None = None,
                    epoch: int | None = None) -> None:
        """Log each value of ``dic`` (nested dicts flattened with dots; ``prefix`` joined with ``_``)."""
        for name, value in _flatten(dic):
            self.log_metric(f"{prefix}_{name}" if prefix else name, value, step=step, epoch=epoch)

    def log_parameter(self, name: str, value: Any, step: int | None = None) -> None:
        """Record a hyper-parameter (value stored as a string; non-strings as JSON)."""
        self._append((A.EVENT_PARAM, _time_ns(), self._ctx_name(str(name)), _value_str(value)))

    def log_parameters(self, parameters: Mapping[str, Any], prefix: str | None = None,
                       step: int | None = None) -> None:
        """Log each parameter (nested dicts flattened with dots; ``prefix`` joined with ``_``)."""
        if not isinstance(parameters, Mapping):
            raise TypeError(f"log_parameters takes a dict, got {type(parameters).__name__}")
        for name, value in _flatten(parameters):
            self.log_parameter(f"{prefix}_{name}" if prefix else name, value, step=step)

    log_param = log_parameter
    log_params = log_parameters

    def log_other(self, key: str, value: Any) -> None:
        """Record a free-form key/value about the run (Comet's "Other" tab)."""
        self._append((A.EVENT_OTHER, _time_ns(), str(key), _value_str(value)))

    def log_others(self, dictionary: Mapping[str, Any]) -> None:
        for key, value in _flatten(dictionary):
            self.log_other(key, value)

    def set_step(self, step: int | None) -> None:
        self._step = 0 if step is None else int(step)

    def set_epoch(self, epoch: int | None) -> None:
        self._epoch = 0 if epoch is None else int(epoch)

    @property
    def curr_step(self) -> int:
        return self._step

    @property
    def curr_epoch(self) -> int:
        return self._epoch

    # -- Comet contexts: `with experiment.train():` prefixes metric names with "train_" --------
    @contextlib.contextmanager
    def context_manager(self, context: str) -> Iterator["Experiment"]:
        old, self._prefix = self._prefix, f"{context}_" if context else ""
        try:
            yield self
        finally:
            self._prefix = old

    def train(self) -> contextlib.AbstractContextManager["Experiment"]:
        return self.context_manager("train")

    def validate(self) -> contextlib.AbstractContextManager["Experiment"]:
        return self.context_manager("validate")

    def test(self) -> contextlib.AbstractContextManager["Experiment"]:
        return self.context_manager("test")

    def _ctx_name(self, name: str) -> str:
        return self._prefix + name if self._prefix else name

    # -- experiment row changes -----------------------------------------------------------------
    def set_name(self, name: str) -> None:
        self.name = str(name)
        self._emit_status()

    def add_tag(self, tag: str) -> None:
        self.add_tags([tag])

    def add_tags(self, tags: Iterable[str]) -> None:
        if isinstance(tags, str):
            tags = [tags]
        new = [str(t) for t in tags if str(t) not in self.tags]
        if not new:
            return
        self.tags.extend(new)
        for t in new:
            self._append((A.EVENT_TAG, _time_ns(), t))
        self._emit_status()

    def get_tags(self) -> list[str]:
        return list(self.tags)

    # -- files ----------------------------------------------------------------------------------
    def _artifact_dir(self) -> Path:
        from orbitwatch.artifacts import artifact_root
        return artifact_root(_transport_mod.get_transport().settings.data_dir) / self.id

    def log_asset(self, file_data: str | os.PathLike[str] | bytes | BinaryIO, file_name: str | None = None,
                  overwrite: bool = False, copy_to_tmp: bool = True, step: int | None = None,
                  metadata: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Copy a file/folder (or write bytes / a binary file) into the artifact store and record it."""
        from orbitwatch.artifacts import safe_name, store_asset
        if self.disabled:
            return None
        if file_name is None:
            if isinstance(file_data, (str, os.PathLike)):
                file_name = Path(file_data).name
            else:
                file_name = getattr(file_data, "name", None) or f"asset-{uuid.uuid4().hex[:8]}"
                file_name = Path(str(file_name)).name
        name = safe_name(file_name)
        stored = store_asset(file_data, self._artifact_dir() / "assets" / name)
        self._append((A.EVENT_ASSET, _time_ns(), name, "asset", stored.uri, stored.size, stored.sha256))
        return {"name": name, "uri": stored.uri, "size": stored.size, "sha256": stored.sha256}

    def log_model(self, name: str, file_or_folder: Any, file_name: str | None = None, overwrite: bool = False,
                  metadata: Mapping[str, Any] | None = None, copy_to_tmp: bool = True,
                  prepend_folder_name: bool = True) -> dict[str, Any] | None:
        """Save a model (torch module, sklearn estimator, picklable object, file or folder) and record it."""
        from orbitwatch.artifacts import safe_name, store_model
        if self.disabled:
            return None
        model_name = safe_name(name)
        stored = store_model(file_or_folder, self._artifact_dir() / "models" / model_name)
        self._append((A.EVENT_ASSET, _time_ns(), model_name, "model", stored.uri, stored.size, stored.sha256))
        return {"name": model_name, "uri": stored.uri, "size": stored.size, "sha256": stored.sha256,
                "files": stored.files}

    # -- other Comet log_* methods, stored as files in the artifact store ---------------------------
    def _json_asset(self, name: str, obj: Any) -> dict[str, Any] | None:
        return self.log_asset(dumps(obj).encode(), file_name=name)

    def log_text(self, text: str, step: int | None = None, metadata: Mapping[str, Any] | None = None
                 ) -> dict[str, Any] | None:
        return self._json_asset(f"text/{step if step is not None else self._step}-{uuid.uuid4().hex[:8]}.json",
                                {"text": str(text), "step": step, "metadata": dict(metadata or {})})

    def log_html(self, html: str, clear: bool = False) -> dict[str, Any] | None:
        return self.log_asset(str(html).encode(), file_name=f"html/{uuid.uuid4().hex[:8]}.html")

    def log_curve(self, name: str, x: Iterable[float], y: Iterable[float], overwrite: bool = False,
                  step: int | None = None) -> dict[str, Any] | None:
        return self._json_asset(f"curves/{name}.json", {"name": name, "x": list(x), "y": list(y), "step": step})

    def log_confusion_matrix(self, y_true: Any = None, y_predicted: Any = None, matrix: Any = None,
                             labels: Any = None, title: str = "Confusion Matrix", file_name: str | None = None,
                             step: int | None = None, **kwargs: Any) -> dict[str, Any] | None:
        if matrix is None and y_true is not None and y_predicted is not None:
            truth, pred = list(y_true), list(y_predicted)
            labels = list(labels) if labels is not None else sorted({*truth, *pred}, key=str)
            index = {v: i for i, v in enumerate(labels)}
            matrix = [[0] * len(labels) for _ in labels]
            for t, p_ in zip(truth, pred, strict=True):
                matrix[index[t]][index[p_]] += 1
        step_ = step if step is not None else self._step
        return self._json_asset(file_name or f"confusion-matrix/{title}-{step_}.json",
                                {"title": title, "labels": labels, "matrix": matrix, "step": step})

    def log_table(self, filename: str, tabular_data: Any = None, headers: Any = False, **kwargs: Any
                  ) -> dict[str, Any] | None:
        if tabular_data is None:
            return self.log_asset(filename)
        to_csv = getattr(tabular_data, "to_csv", None)
        if callable(to_csv):
            return self.log_asset(to_csv(index=False).encode(), file_name=filename)
        import csv
        import io
        buf = io.StringIO()
        writer = csv.writer(buf)
        if headers and headers is not True:
            writer.writerow(headers)
        writer.writerows(tabular_data)
        return self.log_asset(buf.getvalue().encode(), file_name=filename)

    def log_image(self, image_data: Any, name: str | None = None, overwrite: bool = False,
                  image_format: str = "png", step: int | None = None, **kwargs: Any) -> dict[str, Any] | None:
        if hasattr(image_data, "save") and not isinstance(image_data, (str, os.PathLike)):  # PIL image
            import io
            buf = io.BytesIO()
            image_data.save(buf, format=image_format.upper())
            image_data = buf.getvalue()
        if name is None and not isinstance(image_data, (str, os.PathLike)):
            name = f"image-{uuid.uuid4().hex[:8]}.{image_format}"
        return self.log_asset(image_data, file_name=f"images/{name or Path(str(image_data)).name}")

    def log_system_info(self, key: str, value: Any) -> None:
        self.log_other(f"system.{key}", value)

    def __getattr__(self, name: str) -> Any:
        """Comet methods we do not implement warn once and do nothing, so migrated code keeps running."""
        if name.startswith(("log_", "set_")) and not name.startswith("__"):
            def unsupported(*args: Any, **kwargs: Any) -> None:
                _transport_mod.STATS.add("unsupported_calls", 1, f"Experiment.{name}() is not supported by "
                                                                 f"orbitwatch; the call was ignored")
            return unsupported
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- lifecycle ------------------------------------------------------------------------------
    def end(self) -> None:
        """Mark finished, send everything buffered and wait (bounded) for it to be exported."""
        self._finish("finished")

    def _finish(self, status: str, flush: bool = True) -> None:
        with self._lock:
            if self.status != "running" or self.disabled:
                return
            self.status = status
            self.ended_at = _time_ns()
            self._max_points = 0  # later log_* calls are rejected with a warning
        transport = _transport_mod.get_transport()
        self._drain(transport, final=True)
        self._emit_status()
        transport.unregister(self)
        with _running_lock:
            _running.discard(self)
        if flush:
            transport.flush(transport.exit_timeout)

    def __enter__(self) -> "Experiment":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            self.log_other("error", f"{exc_type.__name__}: {exc}")
        self._finish("failed" if exc is not None else "finished")

    # -- internals ------------------------------------------------------------------------------
    def _append(self, record: tuple[Any, ...]) -> None:
        if len(self._buf) >= self._max_points:
            return self._reject(1)
        self._buf.append(record)
        if len(self._buf) >= self._wake_at:
            self._wake()

    def _wake(self) -> None:
        self._wake_at = len(self._buf) + EVENTS_PER_SPAN
        _transport_mod.get_transport().wake()

    def _reject(self, n: int) -> None:
        if self.disabled:
            return
        if self.status != "running":
            if "ended" not in self._warned:
                self._warned.add("ended")
                log.warning("orbitwatch: experiment %s already ended; later log_* calls are ignored", self.id)
            _transport_mod.STATS.add("dropped_points", n)
            return
        _transport_mod.STATS.add("dropped_points", n, f"experiment buffer full ({self._max_points} points; is the "
                                                      f"endpoint reachable?); dropping new points")

    def _non_numeric(self, name: str, value: Any) -> None:
        if f"metric:{name}" not in self._warned:
            self._warned.add(f"metric:{name}")
            log.warning("orbitwatch: metric %r got non-numeric value %r; recorded with log_other instead",
                        name, value)
        self.log_other(name, value)

    def _status_attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            A.KIND: "experiment",
            A.EXPERIMENT_ID: self.id,
            A.EXPERIMENT_NAME: self.name,
            A.EXPERIMENT_STATUS: self.status,
            A.EXPERIMENT_STARTED_AT: str(self.started_at),
            A.EXPERIMENT_TAGS: dumps(self.tags),
            A.EXPERIMENT_SYSTEM: dumps(self.system),
            A.PROJECT: self.project,
            A.WORKSPACE: self.workspace,
        }
        if self.ended_at is not None:
            attrs[A.EXPERIMENT_ENDED_AT] = str(self.ended_at)
        return attrs

    def _emit_status(self) -> None:
        if self.disabled:
            return
        try:
            tracer = _transport_mod.get_transport().tracer(self.project, self.api_key)
            attrs = self._status_attributes()
            if self._parent_ctx is None:
                span = tracer.start_span("experiment", context=otel_context.Context(), attributes=attrs)
                span.end()
                self._root = span.get_span_context()
                self._parent_ctx = trace_api.set_span_in_context(
                    trace_api.NonRecordingSpan(self._root), otel_context.Context())
            else:
                tracer.start_span("experiment", context=self._parent_ctx, attributes=attrs).end()
        except Exception:  # noqa: BLE001 - tracking must never break the training run
            log.warning("orbitwatch: could not record experiment status", exc_info=True)

    def _drain(self, transport: "_transport_mod.Transport", final: bool) -> None:
        """Turn buffered points into ``experiment.batch`` spans (called by the flusher)."""
        if not self._buf:
            return
        with self._drain_lock:
            self._drain_locked(transport, final)

    def _drain_locked(self, transport: "_transport_mod.Transport", final: bool) -> None:
        buf = self._buf
        pipe = transport.pipeline(self.api_key)
        base = {A.KIND: "experiment.batch", A.EXPERIMENT_ID: self.id, A.PROJECT: self.project}
        if self.workspace:
            base[A.WORKSPACE] = self.workspace
        metric_event, event = wire.metric_event, wire.event
        while buf:
            if not pipe.bulk_has_room():
                if not final:
                    break  # back-pressure: keep points buffered until the queue drains
                pipe.bulk.force_flush()
            parts: list[bytes] = []
            size = 0
            first_ts = buf[0][1]
            while buf and len(parts) < EVENTS_PER_SPAN and size < BYTES_PER_SPAN:
                rec = buf.popleft()
                kind = rec[0]
                if kind == A.EVENT_METRIC:
                    _, ts, name, value, step, epoch, seq = rec
                    if type(name) is not str:
                        name = str(name)
                    part = metric_event(ts, name, value, step, epoch, seq)
                elif kind == A.EVENT_ASSET:
                    _, ts, name, akind, uri, asize, sha = rec
                    part = event(kind, ts, {"name": name, "kind": akind, "uri": uri, "size": asize, "sha256": sha})
                elif kind == A.EVENT_TAG:
                    part = event(kind, rec[1], {"name": rec[2]})
                else:  # param / other
                    _, ts, name, value = rec
                    part = event(kind, ts, {"name": name, "value": value})
                parts.append(part)
                size += len(part)
            pipe.emit_encoded(self.project, "experiment.batch", self._root, base, first_ts, _time_ns(),
                              b"".join(parts), len(parts))
        self._wake_at = len(buf) + EVENTS_PER_SPAN


def start(api_key: str | None = None, workspace: str | None = None, project_name: str | None = None,
          experiment_key: str | None = None, mode: str | None = None, online: bool | None = None,
          experiment_config: Any = None, **kwargs: Any) -> Experiment:
    """Comet's ``comet_ml.start``: create (and start) an experiment."""
    return Experiment(api_key=api_key, project_name=project_name, workspace=workspace,
                      experiment_key=experiment_key, **kwargs)


def _end_running_at_exit() -> None:
    """Experiments still running at exit end as ``failed`` after an uncaught exception, else ``finished``."""
    crashed = getattr(sys, "last_value", None) is not None
    for exp in list(_running):
        try:
            exp._finish("failed" if crashed else "finished", flush=False)
        except Exception:  # noqa: BLE001
            log.exception("orbitwatch: ending experiment %s at exit failed", exp.id)


_transport_mod.add_exit_hook(_end_running_at_exit)
if hasattr(os, "register_at_fork"):  # a forked child must not end (or flush) its parent's experiments
    os.register_at_fork(after_in_child=_running.clear)
