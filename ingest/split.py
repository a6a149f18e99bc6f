"""Turn one OTLP Export request into Kafka-sized records, validating what the spec asks us to.

Why split at all: a Kafka partition is the unit of ordering and parallelism downstream. Traces are
split so that every span of a trace lands on one partition (the sink and evals see whole traces):
one record per trace keyed by the trace id in hex or, when the publisher tells us the partition
count, one record per partition holding the request's traces that map there (keyed by the first
trace's id, which maps to that partition too). Metrics and logs are split per resource,
keyed by ``service.name``. Every record is itself a valid ``Export*ServiceRequest`` protobuf, so a
consumer decodes it with the same code as the wire format. Records are kept ≤ ``max_record_bytes``
(default 900 KB, under Kafka's 1 MB default) by halving the item list until they fit.

When nothing needs changing (one resource, one trace, every id valid, small enough) the request
bytes are forwarded as they came, without a re-serialisation.

Partial success (OTLP spec): a span whose trace id is not 16 bytes or all zero, or whose span id is
not 8 bytes or all zero, or whose parent span id is neither empty nor 8 bytes, is dropped on its
own and counted; so is a single item too large for any record. The rest are accepted.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from orbitwatch.ingest.publisher import key_partition

DEFAULT_MAX_RECORD_BYTES = 900_000
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)

# rejection reasons (also the values of the ``reason`` label of the rejected counters)
INVALID_TRACE_ID = "invalid_trace_id"
INVALID_SPAN_ID = "invalid_span_id"
ITEM_TOO_LARGE = "item_too_large"

_MESSAGES = {
    INVALID_TRACE_ID: "trace id must be 16 bytes and not all zero",
    INVALID_SPAN_ID: "span id must be 8 bytes and not all zero (parent span id empty or 8 bytes)",
    ITEM_TOO_LARGE: "a single item is larger than the record limit",
}


class MalformedRequest(ValueError):
    """The body is not a decodable OTLP request (→ gRPC INVALID_ARGUMENT / HTTP 400)."""


@dataclass
class Split:
    """Records to publish plus what was counted on the way."""

    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    received: int = 0  # spans / data points / log records in the request
    rejected: Counter = field(default_factory=Counter)  # reason -> items dropped

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def accepted(self) -> int:
        return self.received - self.rejected_total

    def error_message(self) -> str:
        """The partial-success message for the client: counts per reason."""
        return "; ".join(f"{n} rejected: {_MESSAGES[r]}" for r, n in sorted(self.rejected.items()))


def _decode(cls: type[Message], body: bytes) -> Message:
    try:
        return cls.FromString(body)
    except DecodeError as exc:
        raise MalformedRequest(f"cannot decode {cls.DESCRIPTOR.name} protobuf: {exc}") from None


def _service_name(resource) -> bytes | None:
    for kv in resource.attributes:
        if kv.key == "service.name":
            return kv.value.string_value.encode() or None
    return None


def _pack(build: Callable[[list[tuple[object, list]]], Message], key: bytes | None,
          groups: list[tuple[object, list]], limit: int, out: Split,
          weight: Callable[[object], int] = lambda item: 1) -> None:
    """Serialise ``groups`` (scope, items) as one record, halving the items until each record fits.
    ``weight`` is how many counted units (spans, data points, log records) an item holds."""
    data = build(groups).SerializeToString()
    if len(data) <= limit:
        out.records.append((key, data))
        return
    flat = [(scope, item) for scope, items in groups for item in items]
    if len(flat) <= 1:
        out.rejected[ITEM_TOO_LARGE] += sum(weight(item) for _, item in flat)
        return
    mid = len(flat) // 2
    for half in (flat[:mid], flat[mid:]):
        regrouped: list[tuple[object, list]] = []
        for scope, item in half:
            if regrouped and regrouped[-1][0] is scope:
                regrouped[-1][1].append(item)
            else:
                regrouped.append((scope, [item]))
        _pack(build, key, regrouped, limit, out, weight)


def split_traces(body: bytes, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 partitions: int | None = None) -> Split:
    """Validate span ids and split into records that each keep whole traces on one partition.

    ``partitions`` None: one record per trace (per resource), keyed by the trace id in hex.
    ``partitions`` n: one record per partition the request's traces map to (``key_partition(trace id
    hex, n)``), keyed by the hex id of its first trace, which maps to that same partition. Fewer,
    larger records cost the gateway, Kafka and every consumer much less per span."""
    req = _decode(ExportTraceServiceRequest, body)
    out = Split()
    bucket_of: dict[bytes, object] = {}  # trace id -> bucket (the trace id itself, or a partition)
    first: dict[object, bytes] = {}  # bucket -> its first trace id (the record key)
    buckets: dict[object, list[tuple[tuple, list]]] = {}  # bucket -> [((resource_spans, scope_spans), spans)]
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            spans = ss.spans
            out.received += len(spans)
            head = (rs, ss)
            for span in spans:
                tid = span.trace_id
                sid = span.span_id
                if len(tid) != 16 or tid == _ZERO_TRACE:
                    out.rejected[INVALID_TRACE_ID] += 1
                    continue
                if len(sid) != 8 or sid == _ZERO_SPAN or len(span.parent_span_id) not in (0, 8):
                    out.rejected[INVALID_SPAN_ID] += 1
                    continue
                b = bucket_of.get(tid)
                if b is None:
                    b = bucket_of[tid] = tid if partitions is None else key_partition(tid.hex().encode(), partitions)
                    first.setdefault(b, tid)
                groups = buckets.get(b)
                if groups is None:
                    buckets[b] = [(head, [span])]
                elif groups[-1][0] is head:
                    groups[-1][1].append(span)
                else:
                    groups.append((head, [span]))
    if len(buckets) == 1 and not out.rejected and len(body) <= max_record_bytes:
        out.records.append((next(iter(first.values())).hex().encode(), body))  # forward as received
        return out
    for b, groups in buckets.items():
        _pack(_build_traces, first[b].hex().encode(), groups, max_record_bytes, out)
    return out


def _build_traces(groups: list[tuple[tuple, list]]) -> Message:
    msg = ExportTraceServiceRequest()
    last_rs = o = None
    for (rs, ss), spans in groups:
        if rs is not last_rs:
            o = msg.resource_spans.add()
            o.resource.CopyFrom(rs.resource)
            o.schema_url = rs.schema_url
            last_rs = rs
        sc = o.scope_spans.add()
        sc.scope.CopyFrom(ss.scope)
        sc.schema_url = ss.schema_url
        sc.spans.extend(spans)
    return msg


def _points(metric) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


def split_metrics(body: bytes, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Split:
    """One record per resource, keyed by ``service.name``; data points are counted, not validated."""
    req = _decode(ExportMetricsServiceRequest, body)
    out = Split()
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            out.received += sum(_points(m) for m in sm.metrics)
    if len(req.resource_metrics) == 1 and len(body) <= max_record_bytes:
        out.records.append((_service_name(req.resource_metrics[0].resource), body))
        return out
    for rm in req.resource_metrics:
        def build(groups: list[tuple[object, list]], rm=rm) -> Message:
            msg = ExportMetricsServiceRequest()
            o = msg.resource_metrics.add()
            o.resource.CopyFrom(rm.resource)
            o.schema_url = rm.schema_url
            for sm, metrics in groups:
                s = o.scope_metrics.add()
                s.scope.CopyFrom(sm.scope)
                s.schema_url = sm.schema_url
                s.metrics.extend(metrics)
            return msg
        groups = [(sm, list(sm.metrics)) for sm in rm.scope_metrics if sm.metrics]
        if groups:
            _pack(build, _service_name(rm.resource), groups, max_record_bytes, out, _points)
    return out


def split_logs(body: bytes, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Split:
    """One record per resource, keyed by ``service.name``. A log record with a trace or span id of
    the wrong length is rejected (both are optional in logs, so empty is fine)."""
    req = _decode(ExportLogsServiceRequest, body)
    out = Split()
    plan: list[tuple[object, list[tuple[object, list]]]] = []
    for rl in req.resource_logs:
        groups: list[tuple[object, list]] = []
        for sl in rl.scope_logs:
            out.received += len(sl.log_records)
            good = []
            for lr in sl.log_records:
                if len(lr.trace_id) not in (0, 16):
                    out.rejected[INVALID_TRACE_ID] += 1
                elif len(lr.span_id) not in (0, 8):
                    out.rejected[INVALID_SPAN_ID] += 1
                else:
                    good.append(lr)
            if good:
                groups.append((sl, good))
        plan.append((rl, groups))
    if len(plan) == 1 and not out.rejected and len(body) <= max_record_bytes:
        out.records.append((_service_name(req.resource_logs[0].resource), body))
        return out
    for rl, groups in plan:
        def build(gs: list[tuple[object, list]], rl=rl) -> Message:
            msg = ExportLogsServiceRequest()
            o = msg.resource_logs.add()
            o.resource.CopyFrom(rl.resource)
            o.schema_url = rl.schema_url
            for sl, records in gs:
                s = o.scope_logs.add()
                s.scope.CopyFrom(sl.scope)
                s.schema_url = sl.schema_url
                s.log_records.extend(records)
            return msg
        if groups:
            _pack(build, _service_name(rl.resource), groups, max_record_bytes, out)
    return out


SPLITTERS: dict[str, Callable[[bytes, int], Split]] = {
    "traces": split_traces, "metrics": split_metrics, "logs": split_logs,
}
