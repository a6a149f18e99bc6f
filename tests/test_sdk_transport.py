"""Transport guarantees: bounded queues drop (counted) instead of blocking, requests are cut
by size, settings come from the environment, JSON capture never raises."""
from __future__ import annotations

import json
import math
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import orbitwatch
from orbitwatch import track
from orbitwatch import transport as transport_mod
from orbitwatch.config import ConfigError
from orbitwatch.serialization import dumps, to_json


class SlowExporter(SpanExporter):
    """Holds every export until released: a gateway that stopped answering."""

    def __init__(self):
        import threading
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans):
        self.release.wait(10)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.release.set()


def test_full_span_queue_drops_new_spans_counts_and_warns_once(monkeypatch, unique, caplog):
    monkeypatch.setenv("ORBITWATCH_MAX_QUEUE_SIZE", "50")
    slow = SlowExporter()
    orbitwatch.configure(exporter=slow, project=f"q-{unique}")
    before = transport_mod.stats()["dropped_spans"]

    @track
    def f():
        return 1

    t0 = time.perf_counter()
    for _ in range(2000):
        f()
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.5, "a full queue must not block the caller"
    dropped = transport_mod.stats()["dropped_spans"] - before
    assert dropped >= 2000 - 50 - 512  # at most one in-flight batch plus the queue got through
    assert caplog.text.count("span queue is full") == 1
    slow.release.set()
    assert orbitwatch.flush(10)
    assert slow.exported + dropped == 2000  # every span is either exported or counted


def test_requests_are_cut_by_size():
    provider = TracerProvider()
    mem = InMemorySpanExporter()
    calls = []

    class Recording(SpanExporter):
        def export(self, spans):
            calls.append(sum(transport_mod.approx_span_bytes(s) for s in spans))
            return mem.export(spans)

        def shutdown(self):
            pass

    tracer = provider.get_tracer("t")
    spans = []
    for i in range(10):
        s = tracer.start_span(f"s{i}", attributes={"big": "x" * 900_000})
        s.end()
        spans.append(s)
    sized = transport_mod._SizedExporter(Recording(), max_request_bytes=2_000_000)
    assert sized.export(spans) is SpanExportResult.SUCCESS
    assert len(calls) == 5 and all(c <= 2_000_000 for c in calls)
    assert len(mem.get_finished_spans()) == 10


def test_settings_from_environment_and_bad_values(monkeypatch):
    monkeypatch.delenv("ORBITWATCH_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    monkeypatch.setenv("ORBITWATCH_API_KEY", "k1")
    monkeypatch.setenv("ORBITWATCH_PROJECT", "envproj")
    t = orbitwatch.configure()
    assert t.settings.endpoint == "http://collector:4317" and t.settings.api_key == "k1" and t.project == "envproj"
    t = orbitwatch.configure(endpoint="https://gw.example:4317", project="flag-wins")
    assert t.settings.endpoint == "https://gw.example:4317" and t.project == "flag-wins"
    exporter = t.pipeline().spans.span_exporter.inner
    assert exporter._headers == (("authorization", "Bearer k1"),) and exporter._insecure is False
    with pytest.raises(ConfigError, match="endpoint"):
        orbitwatch.configure(endpoint="ftp://nope")
    orbitwatch.configure(exporter=InMemorySpanExporter())


def test_json_capture_never_raises_and_handles_odd_values():
    class Bad:
        def __repr__(self):
            raise RuntimeError("no repr")

    circular: list = []
    circular.append(circular)
    assert dumps(Bad()).startswith('"<unrepresentable ') and dumps(Bad()).endswith('Bad>"')
    assert isinstance(json.loads(dumps(circular)), str)
    assert json.loads(dumps({"a": math.nan, "b": [math.inf]})) == {"a": "nan", "b": ["inf"]}
    assert json.loads(dumps({1: b"bytes", "t": (1, 2)})) == {"1": "bytes", "t": [1, 2]}
    text, cut = to_json("é" * 10, max_chars=5)
    assert cut and text.startswith('"éééé')
    assert to_json({"k": 1}) == ('{"k":1}', False)


@pytest.mark.parametrize("value", [0.0, -1.5, 1e300, math.inf])
def test_pre_encoded_events_equal_the_otel_encoders(value):
    """orbitwatch.wire must produce exactly what the OpenTelemetry encoder would."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as PBSpan

    from orbitwatch import wire

    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("s")
    cases = [(1_700_000_000_123_456_789, "loss/é", value, -3, 2, 2**40), (5, "x" * 300, value, 0, 0, 0)]
    encoded = b""
    for ts, name, v, step, epoch, seq in cases:
        span.add_event("metric", {"name": name, "value": v, "step": step, "epoch": epoch, "seq": seq}, ts)
        encoded += wire.metric_event(ts, name, v, step, epoch, seq)
    other = {"name": "n", "value": "v" * 200, "size": 12345678901, "ok": True, "f": 0.5}
    span.add_event("asset", other, 7)
    encoded += wire.event("asset", 7, other)
    span.end()
    (reference,) = [s for rs in encode_spans([span]).resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert list(PBSpan.FromString(encoded).events) == list(reference.events)

    decoded = wire.EncodedSpan(encoded, 3, name="b", context=span.context).events
    assert [(e.name, e.timestamp, dict(e.attributes)) for e in decoded] == [
        (e.name, e.timestamp, dict(e.attributes)) for e in span.events]
