"""Pre-encoded span events: the fast path for bulk spans (experiment points, predictions).

Why: the OpenTelemetry SDK turns each span event into an ``Event`` with ``BoundedAttributes``
(~4 µs) and the OTLP encoder then builds ~11 protobuf objects per event (~12 µs); at tens of
thousands of metric points per second that, not the network, was the limit. Experiment and
monitoring batches instead encode each event straight to OTLP protobuf wire bytes
(``Span.events`` entries, field 11) with a few ``struct.pack`` calls and cached prefixes (~1-2 µs),
and ship them on an :class:`EncodedSpan`. Our exporter (:func:`encode_request`) lets the
stock OTel encoder produce the span without events and appends the bytes with
``MergeFromString`` — protobuf's defined behaviour for repeated fields — so the result is a
normal OTLP span to every receiver.

Any other exporter (e.g. ``InMemorySpanExporter`` in tests) sees ordinary SDK ``Event``
objects: :attr:`EncodedSpan.events` decodes the bytes on first access.
"""
from __future__ import annotations

import struct
from typing import Any, Mapping, Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PBSpan
from opentelemetry.sdk.trace import Event, ReadableSpan

#: Bytes of events packed into one bulk span: the packer stops once this is reached, so a span is at
#: most this plus one event (the largest, a 20k-value reference chunk, is ≤ ~400 KB): ≤ ~800 KB. The
#: gateway keeps Kafka records under 900 KB and refuses a single span larger than that (partial
#: success), so bulk spans must stay below it.
MAX_SPAN_BYTES = 400_000

_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<Q").pack
_SMALL = [bytes([i]) for i in range(128)]
_MASK64 = (1 << 64) - 1


def varint(n: int) -> bytes:
    """Protobuf base-128 varint; negative int64 as ten-byte two's complement."""
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n &= _MASK64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def any_value(value: Any) -> bytes:
    """An ``AnyValue`` message (str, bool, int, float; anything else as its str)."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_d(value)
    return _ld(b"\x0a", str(value).encode("utf-8", "surrogatepass"))


def attribute(key: str, value: Any) -> bytes:
    """One ``attributes`` entry (field 3 of Span.Event): tag + length + KeyValue."""
    kv = _ld(b"\x0a", key.encode()) + _ld(b"\x12", any_value(value))
    return _ld(b"\x1a", kv)


def event(name: str, time_unix_nano: int, attributes: Mapping[str, Any]) -> bytes:
    """One ``Span.events`` entry (field 11) as wire bytes."""
    body = b"\x09" + _pack_q(time_unix_nano) + _ld(b"\x12", name.encode()) + \
        b"".join(attribute(k, v) for k, v in attributes.items())
    return _ld(b"\x5a", body)


# -- metric events: the hot one, with every constant part precomputed -------------------------
_METRIC_NAME = _ld(b"\x12", b"metric")
_VALUE_HEAD = b"\x1a" + varint(7 + 2 + 9) + b"\x0a\x05value" + b"\x12\x09\x21"


def _int_heads(key: str) -> list[bytes]:
    """Prefix of an int attribute ``key`` for each varint length 1..10 (index = length)."""
    k = _ld(b"\x0a", key.encode())
    heads = [b""]
    for vlen in range(1, 11):
        kv_len = len(k) + 2 + 1 + vlen  # key field + value tag/len + AnyValue tag + varint
        heads.append(b"\x1a" + varint(kv_len) + k + b"\x12" + varint(1 + vlen) + b"\x18")
    return heads


_STEP = _int_heads("step")
_EPOCH = _int_heads("epoch")
_SEQ = _int_heads("seq")
_names: dict[str, bytes] = {}


def metric_event(ts: int, name: str, value: float, step: int, epoch: int, seq: int) -> bytes:
    """``metric`` event {name, value, step, epoch, seq} at ``ts`` (the experiment contract)."""
    nkv = _names.get(name)
    if nkv is None:
        nkv = attribute("name", name)
        if len(_names) < 100_000:
            _names[name] = nkv
    vs = varint(step)
    ve = varint(epoch)
    vq = varint(seq)
    body = b"".join((b"\x09", _pack_q(ts), _METRIC_NAME, nkv, _VALUE_HEAD, _pack_d(value),
                     _STEP[len(vs)], vs, _EPOCH[len(ve)], ve, _SEQ[len(vq)], vq))
    return b"\x5a" + varint(len(body)) + body


def _py(v: Any) -> Any:
    which = v.WhichOneof("value")
    return getattr(v, which) if which else None


class EncodedSpan(ReadableSpan):
    """A finished span whose events are already OTLP wire bytes (see the module docstring)."""

    def __init__(self, encoded_events: bytes, event_count: int, **kwargs: Any) -> None:
        super().__init__(events=(), **kwargs)
        self.encoded_events = encoded_events
        self.event_count = event_count
        self._decoded: tuple[Event, ...] | None = None

    @property
    def events(self) -> Sequence[Event]:  # type: ignore[override]
        if self._decoded is None:
            pb = PBSpan.FromString(self.encoded_events)
            self._decoded = tuple(
                Event(e.name, {kv.key: _py(kv.value) for kv in e.attributes}, e.time_unix_nano) for e in pb.events)
        return self._decoded

    def without_events(self) -> ReadableSpan:
        return ReadableSpan(name=self.name, context=self.context, parent=self.parent, resource=self.resource,
                            attributes=self.attributes, events=(), kind=self.kind, status=self.status,
                            start_time=self.start_time, end_time=self.end_time,
                            instrumentation_scope=self.instrumentation_scope)


class SpooledRequest:
    """A request read back from the disk spool, passed through the exporter as-is."""

    def __init__(self, raw: bytes) -> None:
        self.request = ExportTraceServiceRequest.FromString(raw)

    def __len__(self) -> int:
        return sum(len(ss.spans) for rs in self.request.resource_spans for ss in rs.scope_spans)


def encode_request(spans: Sequence[ReadableSpan] | SpooledRequest) -> ExportTraceServiceRequest:
    """OTel's ``encode_spans`` plus the pre-encoded events of :class:`EncodedSpan` s."""
    if isinstance(spans, SpooledRequest):
        return spans.request
    plain: list[ReadableSpan] = []
    extra: dict[int, bytes] = {}
    for s in spans:
        if isinstance(s, EncodedSpan):
            plain.append(s.without_events())
            extra[s.context.span_id] = s.encoded_events
        else:
            plain.append(s)
    request = encode_spans(plain)
    if extra:
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    enc = extra.get(int.from_bytes(sp.span_id, "big"))
                    if enc:
                        sp.MergeFromString(enc)
    return request
