"""A tiny but real OTLP/gRPC TraceService server for tests (no mocks: the SDK's exporter talks gRPC to it).

    with OtlpReceiver() as rx:                      # listens on 127.0.0.1:<free port>
        configure(endpoint=rx.endpoint, api_key="k")
        ...
        spans = rx.wait_for(lambda spans: len(spans) >= 3)

It records every ``ExportTraceServiceRequest`` with its gRPC metadata, and offers a flattened
view (:class:`ReceivedSpan`: hex ids, resource/span attributes and events as plain Python
values). ``fail_next(n, code)`` makes the next ``n`` calls fail with a gRPC status (e.g.
UNAVAILABLE) to exercise the exporter's retries; ``reject_next(n, message)`` answers the next call
with an OTLP partial success. Reusable by other engineers' tests.
"""
from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Callable

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def any_value(v: AnyValue) -> Any:
    """An OTLP AnyValue as a Python value."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class ReceivedEvent:
    name: str
    time_unix_nano: int
    attributes: dict[str, Any]


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    resource: dict[str, Any]
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    status_code: int
    status_message: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    scope: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


class _Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, owner: "OtlpReceiver") -> None:
        self.owner = owner

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
               ) -> trace_service_pb2.ExportTraceServiceResponse:
        owner = self.owner
        with owner._lock:
            owner.calls += 1
            if owner._fail_remaining > 0:
                owner._fail_remaining -= 1
                owner.failed_calls += 1
                context.abort(owner._fail_code, "test receiver told to fail")
            owner.requests.append((request, dict(context.invocation_metadata())))
            owner._cond.notify_all()
            reject, owner._reject = owner._reject, None
        response = trace_service_pb2.ExportTraceServiceResponse()
        if reject is not None:
            response.partial_success.rejected_spans = reject[0]
            response.partial_success.error_message = reject[1]
        return response


class OtlpReceiver:
    """A gRPC server on loopback implementing ``opentelemetry.proto.collector.trace.v1.TraceService``."""

    def __init__(self, port: int = 0, max_message_bytes: int = 4 * 1024 * 1024) -> None:
        self.requests: list[tuple[trace_service_pb2.ExportTraceServiceRequest, dict[str, str]]] = []
        self.calls = 0
        self.failed_calls = 0
        self._fail_remaining = 0
        self._fail_code = grpc.StatusCode.UNAVAILABLE
        self._reject: tuple[int, str] | None = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                                   options=[("grpc.max_receive_message_length", max_message_bytes)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> "OtlpReceiver":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=0.5).wait()

    def __enter__(self) -> "OtlpReceiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def fail_next(self, n: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        with self._lock:
            self._fail_remaining = n
            self._fail_code = code

    def reject_next(self, rejected_spans: int, message: str) -> None:
        """Answer the next call with an OTLP partial success rejecting ``rejected_spans`` spans."""
        with self._lock:
            self._reject = (rejected_spans, message)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            requests = list(self.requests)
        out: list[ReceivedSpan] = []
        for req, metadata in requests:
            for rs in req.resource_spans:
                resource = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append(ReceivedSpan(
                            name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(), resource=resource,
                            attributes=attrs(s.attributes),
                            events=[ReceivedEvent(e.name, e.time_unix_nano, attrs(e.attributes)) for e in s.events],
                            status_code=s.status.code, status_message=s.status.message,
                            start_time_unix_nano=s.start_time_unix_nano, end_time_unix_nano=s.end_time_unix_nano,
                            scope=ss.scope.name, metadata=metadata))
        return out

    def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0) -> list[ReceivedSpan]:
        """Wait until ``predicate(spans)`` holds; returns the spans (raises AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"receiver: condition not met within {timeout}s; got {len(spans)} spans: "
                                     f"{sorted({s.name for s in spans})}")
            with self._cond:
                self._cond.wait(min(remaining, 0.2))
