"""How SDK data leaves the process: our own OpenTelemetry TracerProvider(s) → OTLP/gRPC.

Design (why it looks like this):

* **Our own providers, never the global one.** ``opentelemetry.trace.set_tracer_provider`` is
  left alone, so an application that configured OpenTelemetry keeps its pipeline untouched.
  There is one provider per project (a Resource carries ``service.name`` and
  ``orbitwatch.project``), all sharing one :class:`Pipeline` per API key.
* **Two queues per pipeline.** ``@track``/feedback/experiment-status spans go through a
  BatchSpanProcessor with a bounded queue (``ORBITWATCH_MAX_QUEUE_SIZE``, default 8192 spans);
  bulk spans (``experiment.batch``, ``prediction.batch``, up to 5000 events each) go through a
  second, short one so a burst of metrics cannot starve LLM traces or the other way round.
  When a queue is full the span is dropped, counted in :func:`stats` and warned about once;
  the caller is never blocked. Bulk producers check :meth:`Pipeline.bulk_has_room` first and
  keep points in their own bounded buffers meanwhile (back-pressure instead of loss).
* **Requests are cut by size** (``ORBITWATCH_MAX_REQUEST_BYTES``, default 3 MB) because an
  OTLP receiver refuses messages above its gRPC limit (4 MB by default) and the OTel
  processor batches by count only.
* **Retries** are the OTLP exporter's (UNAVAILABLE, RESOURCE_EXHAUSTED, ... with exponential
  backoff and ``RetryInfo``, within ``OTEL_EXPORTER_OTLP_TIMEOUT``). A batch that still fails
  is counted in ``stats()["export_failed_spans"]`` (warned about once); the program keeps running.
* **Flushing**: one daemon thread (the *flusher*) turns buffered experiment points and
  predictions into bulk spans every ``ORBITWATCH_FLUSH_INTERVAL`` seconds (default 0.5);
  :func:`flush` and interpreter exit drain everything (bounded by ``ORBITWATCH_EXIT_TIMEOUT``,
  default 10 s, so a dead gateway cannot hang exit).

Settings come from :func:`orbitwatch.config.load_settings` (``ORBITWATCH_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``ORBITWATCH_API_KEY``, ``ORBITWATCH_PROJECT``) and can be
overridden with :func:`configure`.
"""
from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags, Tracer

from orbitwatch.schemas import attributes as A

log = logging.getLogger("orbitwatch")

BULK_KINDS = frozenset({"experiment.batch", "prediction.batch"})
SCOPE = "orbitwatch"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _env_int(name: str, default: int) -> int:
    return int(_env_float(name, default))


class _Stats:
    """Counters for everything the SDK had to give up on (nothing drops without a counter)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {
            "dropped_spans": 0,  # a span queue was full
            "dropped_points": 0,  # an experiment/monitoring buffer was full
            "export_failed_spans": 0,  # the exporter gave up after its retries
            "exported_spans": 0,
        }
        self._warned: set[str] = set()

    def add(self, name: str, n: int = 1, warning: str | None = None) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n
            first = warning is not None and name not in self._warned
            if first:
                self._warned.add(name)
        if first:
            log.warning("orbitwatch: %s (further occurrences are only counted: orbitwatch.stats()[%r])",
                        warning, name)


STATS = _Stats()


def stats() -> dict[str, int]:
    """Snapshot of the SDK's own counters (dropped/failed/exported spans, dropped points)."""
    with STATS.lock:
        return dict(STATS.counts)


def approx_span_bytes(span: ReadableSpan) -> int:
    """Rough protobuf size of a span: enough to keep requests under the receiver's limit."""
    n = 120 + len(span.name)
    for k, v in (span.attributes or {}).items():
        n += 8 + len(k) + (len(v) if isinstance(v, str) else 10)
    encoded = getattr(span, "encoded_events", None)
    if encoded is not None:  # orbitwatch.wire.EncodedSpan: exact, and no decoding
        return n + len(encoded)
    for ev in span.events:
        n += 30 + len(ev.name)
        for k, v in (ev.attributes or {}).items():
            n += 8 + len(k) + (len(v) if isinstance(v, str) else 10)
    return n


class _SizedExporter(SpanExporter):
    """Wraps the OTLP exporter: splits batches by size, spools or counts failures."""

    def __init__(self, inner: SpanExporter, max_request_bytes: int, spool: Any = None) -> None:
        self.inner = inner
        self.max_request_bytes = max_request_bytes
        self.spool = spool

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        chunks: list[list[ReadableSpan]] = []
        current: list[ReadableSpan] = []
        size = 0
        for span in spans:
            s = approx_span_bytes(span)
            if current and size + s > self.max_request_bytes:
                chunks.append(current)
                current, size = [], 0
            current.append(span)
            size += s
        if current:
            chunks.append(current)
        result = SpanExportResult.SUCCESS
        for chunk in chunks:
            try:
                r = self.inner.export(chunk)
            except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the worker
                log.debug("orbitwatch exporter raised", exc_info=exc)
                r = SpanExportResult.FAILURE
            if r is SpanExportResult.SUCCESS:
                STATS.add("exported_spans", len(chunk))
            elif self.spool is not None and self._spool(chunk):
                STATS.add("spooled_spans", len(chunk), f"the Orbitwatch endpoint is unreachable; spooling "
                                                       f"requests to {self.spool.dir} for replay")
            else:
                result = SpanExportResult.FAILURE
                STATS.add("export_failed_spans", len(chunk),
                          f"could not export {len(chunk)} spans to the Orbitwatch endpoint after retries")
        return result

    def _spool(self, chunk: list[ReadableSpan]) -> bool:
        from orbitwatch.wire import encode_request
        try:
            return bool(self.spool.write(encode_request(chunk).SerializeToString()))
        except Exception:  # noqa: BLE001 - a full disk must not break the exporter thread
            log.debug("orbitwatch: spooling failed", exc_info=True)
            return False

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _DroppingBatchSpanProcessor(BatchSpanProcessor):
    """BatchSpanProcessor that drops the *new* span (counted, warned once) when its queue is full.

    The stock processor evicts the oldest span and logs on every drop; we prefer to keep what is
    already queued and to count instead of logging.
    """

    def __init__(self, exporter: SpanExporter, *, label: str, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self.label = label
        bp = getattr(self, "_batch_processor", None)
        self._queue = getattr(bp, "_queue", None)
        self._max = getattr(bp, "_max_queue_size", None)

    def free_slots(self) -> int:
        if self._queue is None or self._max is None:
            return 1 << 30
        return self._max - len(self._queue)

    def on_end(self, span: ReadableSpan) -> None:
        if self._queue is not None and len(self._queue) >= self._max:  # type: ignore[operator]
            STATS.add("dropped_spans", 1, f"the {self.label} span queue is full; dropping spans")
            return
        super().on_end(span)


class _Router(SpanProcessor):
    """Sends bulk spans to the bulk queue and everything else to the span queue."""

    def __init__(self, spans: _DroppingBatchSpanProcessor, bulk: _DroppingBatchSpanProcessor) -> None:
        self.spans = spans
        self.bulk = bulk

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes
        if attrs and attrs.get(A.KIND) in BULK_KINDS:
            self.bulk.on_end(span)
        else:
            self.spans.on_end(span)

    def shutdown(self) -> None:  # shut down explicitly by Pipeline.shutdown, once
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.spans.force_flush(timeout_millis) and self.bulk.force_flush(timeout_millis)


class Pipeline:
    """Exporter + queues for one (endpoint, API key); providers per project share it."""

    def __init__(self, exporter_factory: Callable[[], SpanExporter], service_name: str | None,
                 spool: Any = None) -> None:
        max_request = _env_int("ORBITWATCH_MAX_REQUEST_BYTES", 3_000_000)
        queue = _env_int("ORBITWATCH_MAX_QUEUE_SIZE", 8192)
        self.spool = spool
        self.spans = _DroppingBatchSpanProcessor(
            _SizedExporter(exporter_factory(), max_request, spool), label="trace",
            max_queue_size=queue, schedule_delay_millis=500, max_export_batch_size=min(512, queue))
        self.bulk = _DroppingBatchSpanProcessor(
            _SizedExporter(exporter_factory(), max_request, spool), label="bulk",
            max_queue_size=64, schedule_delay_millis=200, max_export_batch_size=8)
        self.router = _Router(self.spans, self.bulk)
        self.service_name = service_name
        self._providers: dict[str, TracerProvider] = {}
        self._tracers: dict[str, Tracer] = {}
        self._lock = threading.Lock()
        # Limits: OTel's defaults (128 events/attributes) would silently cut our batch spans.
        self._scope = InstrumentationScope(SCOPE, _version())
        self._limits = SpanLimits(max_events=10_000, max_attributes=512, max_event_attributes=64,
                                  max_links=128, max_span_attributes=512, max_attribute_length=None)

    def tracer(self, project: str) -> Tracer:
        tracer = self._tracers.get(project)
        if tracer is not None:
            return tracer
        with self._lock:
            tracer = self._tracers.get(project)
            if tracer is None:
                resource = _resource(self.service_name, project)
                provider = TracerProvider(resource=resource, sampler=sampling.ALWAYS_ON,
                                          shutdown_on_exit=False, span_limits=self._limits)
                provider.add_span_processor(self.router)
                self._providers[project] = provider
                tracer = provider.get_tracer(SCOPE, _version())
                self._tracers[project] = tracer
        return tracer

    def emit_encoded(self, project: str, name: str, parent: SpanContext | None, attributes: dict[str, Any],
                     start_ns: int, end_ns: int, encoded_events: bytes, event_count: int) -> None:
        """Queue a finished bulk span whose events are OTLP wire bytes (see :mod:`orbitwatch.wire`).

        ``parent`` None starts a new trace. Bypasses the SDK's per-event objects on purpose.
        """
        from orbitwatch.wire import EncodedSpan
        self.tracer(project)
        provider = self._providers[project]
        ids = provider.id_generator
        trace_id = parent.trace_id if parent is not None else ids.generate_trace_id()
        context = SpanContext(trace_id, ids.generate_span_id(), is_remote=False,
                              trace_flags=TraceFlags(TraceFlags.SAMPLED))
        span = EncodedSpan(encoded_events, event_count, name=name, context=context, parent=parent,
                           resource=provider.resource, attributes=attributes, start_time=start_ns, end_time=end_ns,
                           instrumentation_scope=self._scope)
        self.router.on_end(span)

    def replay_spool(self) -> bool:
        """Send spooled requests through the span exporter; True when the spool is empty."""
        if self.spool is None:
            return True
        from orbitwatch.wire import SpooledRequest
        exporter = self.spans.span_exporter.inner

        def send(raw: bytes) -> bool:
            req = SpooledRequest(raw)
            ok = exporter.export(req) is SpanExportResult.SUCCESS
            if ok:
                STATS.add("replayed_spans", len(req))
            return ok
        sent, done = self.spool.replay(send)
        return done

    def bulk_has_room(self, spans: int = 1) -> bool:
        return self.bulk.free_slots() >= spans

    def force_flush(self) -> None:
        self.bulk.force_flush()
        self.spans.force_flush()

    def shutdown(self) -> None:
        self.bulk.shutdown()
        self.spans.shutdown()


def _resource(service_name: str | None, project: str) -> Resource:
    """SDK defaults + ``OTEL_RESOURCE_ATTRIBUTES`` + ours, without ``Resource.create``'s thread pool.

    (``Resource.create`` runs detectors in a ThreadPoolExecutor, which fails during interpreter
    exit, exactly when unfinished experiments end themselves.)
    """
    from opentelemetry.sdk.resources import OTELResourceDetector
    from opentelemetry.sdk.version import __version__ as sdk_version
    env = OTELResourceDetector().detect()
    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or env.attributes.get("service.name") \
        or default_service_name(project)
    return Resource({"telemetry.sdk.language": "python", "telemetry.sdk.name": "opentelemetry",
                     "telemetry.sdk.version": sdk_version}).merge(env).merge(
        Resource({"service.name": str(name), A.PROJECT: project}))


def _version() -> str:
    from orbitwatch import __version__
    return __version__


def default_service_name(project: str) -> str:
    """``OTEL_SERVICE_NAME``, else the project (unless it is "default"), else the script's name."""
    env = os.environ.get("OTEL_SERVICE_NAME")
    if env:
        return env
    if project and project != "default":
        return project
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    return script or "python"


class BufferSource(Protocol):
    """Something holding points to turn into bulk spans (an Experiment, a MonitoredModel)."""

    def _drain(self, transport: "Transport", final: bool) -> None: ...


class Transport:
    """Process-wide SDK state: settings, pipelines, the flusher thread and exit handling."""

    def __init__(self, *, endpoint: str | None = None, api_key: str | None = None, project: str | None = None,
                 exporter: SpanExporter | None = None, service_name: str | None = None,
                 flush_interval: float | None = None, max_field_chars: int | None = None) -> None:
        from orbitwatch.config import load_settings
        from orbitwatch.serialization import DEFAULT_MAX_CHARS
        self.settings = load_settings(endpoint=endpoint, api_key=api_key, project=project)
        self._custom_exporter = exporter
        self.service_name = service_name
        self.flush_interval = flush_interval if flush_interval is not None else _env_float(
            "ORBITWATCH_FLUSH_INTERVAL", 0.5)
        self.max_field_chars = max_field_chars if max_field_chars is not None else _env_int(
            "ORBITWATCH_MAX_FIELD_CHARS", DEFAULT_MAX_CHARS)
        self.exit_timeout = _env_float("ORBITWATCH_EXIT_TIMEOUT", 10.0)
        self._pipelines: dict[str, Pipeline] = {}
        self._lock = threading.Lock()
        self._sources: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._wake = threading.Event()
        self._stop = False
        self._drain_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._spool_thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.closed = False
        from orbitwatch.spool import spool_root
        self.spool_root = None if exporter is not None else spool_root(self.settings.data_dir)
        self.spool_max_bytes = _env_int("ORBITWATCH_SPOOL_MAX_BYTES", 256 << 20)

    @property
    def project(self) -> str:
        return self.settings.project

    # -- pipelines -------------------------------------------------------------------------
    def pipeline(self, api_key: str | None = None) -> Pipeline:
        key = api_key or self.settings.api_key
        pipe = self._pipelines.get(key)
        if pipe is not None:
            return pipe
        with self._lock:
            pipe = self._pipelines.get(key)
            if pipe is None:
                spool = None
                if self.spool_root is not None:
                    from orbitwatch.spool import Spool
                    spool = Spool(self.spool_root, key, self.spool_max_bytes)
                pipe = Pipeline(lambda: self._make_exporter(key), self.service_name, spool)
                self._pipelines[key] = pipe
                if spool is not None and self._spool_thread is None:
                    self._spool_thread = threading.Thread(target=self._replay_loop, name="orbitwatch-spool",
                                                          daemon=True)
                    self._spool_thread.start()
        return pipe

    def _replay_loop(self) -> None:
        """Replay spooled requests (also those left by earlier runs) with backoff while they fail."""
        delay = 1.0
        while not self._stop:
            done = True
            for pipe in list(self._pipelines.values()):
                try:
                    done = pipe.replay_spool() and done
                except Exception:  # noqa: BLE001
                    log.debug("orbitwatch: spool replay failed", exc_info=True)
                    done = False
            delay = 2.0 if done else min(delay * 2, 30.0)
            if self._stopped.wait(delay):
                return

    def tracer(self, project: str | None = None, api_key: str | None = None) -> Tracer:
        return self.pipeline(api_key).tracer(project or self.settings.project)

    def _make_exporter(self, api_key: str) -> SpanExporter:
        if self._custom_exporter is not None:
            return _Shared(self._custom_exporter)
        endpoint = self.settings.endpoint
        headers = {"authorization": f"Bearer {api_key}"} if api_key else None
        return _otlp_exporter_class()(endpoint=endpoint, insecure=endpoint.startswith("http://"), headers=headers)

    # -- flusher ---------------------------------------------------------------------------
    def register(self, source: BufferSource) -> None:
        """Have ``source._drain(transport, final)`` called by the flusher every ``flush_interval`` seconds."""
        self._sources.add(source)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="orbitwatch-flusher", daemon=True)
                    self._thread.start()

    def unregister(self, source: BufferSource) -> None:
        self._sources.discard(source)

    def wake(self) -> None:
        """Ask the flusher to drain now (a buffer grew past a batch)."""
        if not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._stop:
                break
            self.drain(final=False)

    def drain(self, final: bool) -> None:
        with self._drain_lock:
            for source in list(self._sources):
                try:
                    source._drain(self, final)
                except Exception:  # noqa: BLE001 - one broken source must not stop the others
                    log.exception("orbitwatch: flushing %r failed", source)

    def flush(self, timeout: float | None = None) -> bool:
        """Drain every buffer and export every queued span; False if ``timeout`` ran out."""
        def work() -> None:
            self.drain(final=True)
            for pipe in list(self._pipelines.values()):
                pipe.force_flush()
        return _run_bounded(work, timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush then stop threads and close channels (idempotent)."""
        if self.closed:
            return True
        ok = self.flush(timeout if timeout is not None else self.exit_timeout)
        self.closed = True
        self._stop = True
        self._stopped.set()
        self._wake.set()
        for pipe in list(self._pipelines.values()):
            _run_bounded(pipe.shutdown, 2.0)
        return ok


class _PartialSuccessStub:
    """Reads OTLP ``partial_success`` (which the stock exporter ignores): rejected spans are
    counted in ``stats()["rejected_spans"]`` and the receiver's reason is logged once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def Export(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - gRPC method name
        response = self.inner.Export(*args, **kwargs)
        partial = getattr(response, "partial_success", None)
        rejected = getattr(partial, "rejected_spans", 0) if partial is not None else 0
        if rejected:
            STATS.add("rejected_spans", int(rejected),
                      f"the endpoint rejected {rejected} spans: {partial.error_message or 'no reason given'}")
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _otlp_exporter_class() -> type:
    """OTLPSpanExporter whose request encoding also handles pre-encoded bulk events (orbitwatch.wire)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from orbitwatch.wire import encode_request

    class OrbitwatchSpanExporter(OTLPSpanExporter):
        def _translate_data(self, data: Any) -> Any:  # spans, or a SpooledRequest being replayed
            return encode_request(data)

        def _initialize_channel_and_stub(self) -> None:
            super()._initialize_channel_and_stub()
            client = getattr(self, "_client", None)
            if client is not None and not isinstance(client, _PartialSuccessStub):
                self._client = _PartialSuccessStub(client)

    return OrbitwatchSpanExporter


class _Shared(SpanExporter):
    """Lets several processors use one caller-supplied exporter without shutting it down."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            return self.inner.export(spans)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _run_bounded(fn: Callable[[], None], timeout: float | None) -> bool:
    """Run ``fn`` in a daemon thread and wait at most ``timeout`` seconds for it."""
    if timeout is None:
        fn()
        return True
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=target, name="orbitwatch-flush", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        log.warning("orbitwatch: flush did not finish within %.1f s (is the endpoint reachable?)", timeout)
        return False
    if errors:
        log.warning("orbitwatch: flush failed: %s", errors[0])
        return False
    return True


_transport: Transport | None = None
_transport_lock = threading.Lock()
_exit_hooks: list[Callable[[], None]] = []


def get_transport() -> Transport:
    """The process-wide transport, created from settings on first use."""
    global _transport
    t = _transport
    if t is not None:
        return t
    with _transport_lock:
        if _transport is None:
            _transport = Transport()
        return _transport


def configure(endpoint: str | None = None, api_key: str | None = None, project: str | None = None, *,
              exporter: SpanExporter | None = None, service_name: str | None = None,
              flush_interval: float | None = None, max_field_chars: int | None = None) -> Transport:
    """Set up (or re-set up) where SDK data goes; unset arguments come from the environment.

    ``exporter`` replaces OTLP/gRPC by any OpenTelemetry ``SpanExporter`` (tests use
    ``InMemorySpanExporter``). Data already buffered is flushed to the previous destination
    first. Raises :class:`orbitwatch.config.ConfigError` for a bad endpoint or project.
    """
    global _transport
    new = Transport(endpoint=endpoint, api_key=api_key, project=project, exporter=exporter,
                    service_name=service_name, flush_interval=flush_interval, max_field_chars=max_field_chars)
    with _transport_lock:
        old, _transport = _transport, new
    if old is not None:
        sources = list(old._sources)
        old.shutdown(timeout=old.exit_timeout)
        for source in sources:  # live experiments/monitors keep working on the new transport
            new.register(source)
    return new


def flush(timeout: float | None = 30.0) -> bool:
    """Send everything buffered so far; returns False if ``timeout`` seconds were not enough."""
    t = _transport
    return True if t is None else t.flush(timeout)


def add_exit_hook(fn: Callable[[], None]) -> None:
    """Run ``fn`` at interpreter exit before the final flush (experiments end themselves here)."""
    _exit_hooks.append(fn)


def _after_fork_in_child() -> None:
    """A forked child starts with no flusher and no sources: the parent's buffers are the parent's."""
    t = _transport
    if t is None:
        return
    t._lock = threading.Lock()
    t._drain_lock = threading.Lock()
    t._wake = threading.Event()
    t._sources = weakref.WeakSet()
    t._thread = None
    t._spool_thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _at_exit() -> None:
    for hook in list(_exit_hooks):
        try:
            hook()
        except Exception:  # noqa: BLE001
            log.exception("orbitwatch: exit hook failed")
    t = _transport
    if t is not None:
        t.shutdown()
