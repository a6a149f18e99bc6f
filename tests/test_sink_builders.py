"""Builders of OTLP requests for the sink/worker tests and benches (real protobuf, no mocks); no tests here.

``sdk_request`` uses the real opentelemetry-sdk (TracerProvider + in-memory exporter) and the
OTLP exporter's own encoder, so the bytes are exactly what an instrumented app sends.
"""
from __future__ import annotations

import json
import time
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

# spans older than the TTL (30 days) are dropped by ClickHouse at insert, so test data is "now"
NOW_NS = time.time_ns()


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=anyvalue(value))


def anyvalue(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        av = AnyValue()
        av.array_value.values.extend(anyvalue(v) for v in value)
        return av
    return AnyValue(string_value=str(value))


def request(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None,
            scope: str = "test") -> ExportTraceServiceRequest:
    """Hand-built request: each span dict has trace_id/span_id (hex), name, attrs, events, start, end."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for k, v in (resource or {"service.name": "svc"}).items():
        rs.resource.attributes.append(kv(k, v))
    ss = rs.scope_spans.add()
    ss.scope.name = scope
    for s in spans:
        sp = ss.spans.add()
        sp.trace_id = bytes.fromhex(s["trace_id"])
        sp.span_id = bytes.fromhex(s["span_id"])
        if s.get("parent_span_id"):
            sp.parent_span_id = bytes.fromhex(s["parent_span_id"])
        sp.name = s.get("name", "span")
        sp.kind = s.get("kind", 1)
        sp.start_time_unix_nano = s.get("start", NOW_NS)
        sp.end_time_unix_nano = s.get("end", sp.start_time_unix_nano + 1_000_000)
        for k, v in s.get("attrs", {}).items():
            sp.attributes.append(kv(k, v))
        for ev in s.get("events", []):
            e = sp.events.add()
            e.name = ev["name"]
            e.time_unix_nano = ev.get("time", sp.start_time_unix_nano)
            for k, v in ev.get("attrs", {}).items():
                e.attributes.append(kv(k, v))
        if s.get("error"):
            sp.status.code = 2
            sp.status.message = s["error"]
    return req


def sdk_request(build: Any, service: str = "otel-app") -> ExportTraceServiceRequest:
    """Run ``build(tracer)`` with a real opentelemetry-sdk TracerProvider and return the OTLP request
    its exporter would send."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("test-instrumentation"))
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())


def payload(record: Any) -> str:
    return record.model_dump_json() if hasattr(record, "model_dump_json") else json.dumps(record)
