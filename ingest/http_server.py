"""OTLP/HTTP (``POST /v1/traces|metrics|logs``) plus the operational endpoints, on aiohttp.

Bodies are protobuf (``application/x-protobuf``) or JSON (``application/json``, the OTLP JSON
mapping: lowerCamelCase names, trace and span ids as hex strings), optionally ``Content-Encoding:
gzip`` (inflated here, with the size limit applied to the inflated bytes). JSON is converted to protobuf on arrival, so Kafka always carries protobuf. The response
uses the request's content type; refusals carry a ``google.rpc.Status`` body, as OTLP/HTTP asks,
and ``Retry-After`` when a retry makes sense.

Status codes: 200 (including partial success), 400 malformed, 401 bad key, 413 too large, 415
unsupported content type, 429 in-flight cap reached, 503 Kafka unavailable.

Operational endpoints: ``GET /metrics`` (Prometheus text), ``GET /healthz`` (process alive) and
``GET /readyz`` (200 only when the bus answers).
"""
from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Awaitable, Callable

from aiohttp import web
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (ExportLogsServiceRequest,
                                                                    ExportLogsServiceResponse)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (ExportMetricsServiceRequest,
                                                                          ExportMetricsServiceResponse)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orbitwatch.ingest.grpc_server import export_response
from orbitwatch.ingest.receiver import INVALID, IngestError, Receiver, Refusal

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
REQUESTS = {"traces": ExportTraceServiceRequest, "metrics": ExportMetricsServiceRequest,
            "logs": ExportLogsServiceRequest}
RESPONSES = {"traces": ExportTraceServiceResponse, "metrics": ExportMetricsServiceResponse,
             "logs": ExportLogsServiceResponse}
UNSUPPORTED = Refusal("UNSUPPORTED_MEDIA_TYPE", "INVALID_ARGUMENT", 415)
# OTLP/JSON writes these bytes fields as hex; protobuf's JSON mapping expects base64.
_HEX_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_GRPC_CODES = {"INVALID_ARGUMENT": 3, "RESOURCE_EXHAUSTED": 8, "UNAUTHENTICATED": 16, "UNAVAILABLE": 14}


def _hex_ids_to_base64(node: object) -> object:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _HEX_ID_FIELDS and isinstance(v, str):
                try:
                    node[k] = base64.b64encode(bytes.fromhex(v)).decode()
                except ValueError:
                    raise IngestError(INVALID, f"{k} must be a hex string, got {v[:40]!r}") from None
            else:
                _hex_ids_to_base64(v)
    elif isinstance(node, list):
        for v in node:
            _hex_ids_to_base64(v)
    return node


def json_to_protobuf(signal: str, body: bytes) -> bytes:
    """OTLP/JSON → the equivalent protobuf bytes; unknown fields are ignored as the spec requires."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IngestError(INVALID, f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise IngestError(INVALID, "body must be a JSON object")
    msg = REQUESTS[signal]()
    try:
        json_format.ParseDict(_hex_ids_to_base64(doc), msg, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise IngestError(INVALID, f"not an OTLP {msg.DESCRIPTOR.name}: {exc}") from None
    return msg.SerializeToString()


def gunzip(data: bytes, limit: int, too_large: Callable[[int | None], IngestError]) -> bytes:
    """Decompress a gzip body, refusing to inflate beyond ``limit`` (no zip bombs)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise IngestError(INVALID, f"Content-Encoding gzip but the body is not valid gzip: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise too_large(None)
    if not d.eof:
        raise IngestError(INVALID, "gzip body is truncated")
    return out


def _error(exc: IngestError, content_type: str) -> web.Response:
    status = status_pb2.Status(code=_GRPC_CODES.get(exc.refusal.grpc, 2), message=exc.message)
    headers = {"Retry-After": exc.retry_after_header} if exc.retry_after_header else {}
    if content_type == JSON:
        body = json_format.MessageToJson(status, indent=None).encode()
    else:
        body, content_type = status.SerializeToString(), PROTOBUF
    return web.Response(status=exc.refusal.http, body=body, content_type=content_type, headers=headers)


def build_app(receiver: Receiver, ready: Callable[[], Awaitable[bool]]) -> web.Application:
    limit = receiver.max_message_bytes
    app = web.Application(client_max_size=limit + 1)
    registry = receiver.metrics.registry

    def make(signal: str):
        async def handler(request: web.Request) -> web.Response:
            ctype = request.content_type
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                if ctype not in (PROTOBUF, JSON):
                    raise IngestError(UNSUPPORTED, f"Content-Type must be {PROTOBUF} or {JSON}, got {ctype!r}")
                principal = receiver.authenticate(headers)  # before reading a possibly large body
                try:
                    body = await request.read()
                except web.HTTPRequestEntityTooLarge:
                    raise receiver.too_large(request.content_length) from None
                encoding = request.headers.get("Content-Encoding", "").lower()
                if encoding == "gzip":
                    body = gunzip(body, limit, receiver.too_large)
                elif encoding not in ("", "identity"):
                    raise IngestError(UNSUPPORTED, f"Content-Encoding {encoding!r} is not supported (use gzip)")
                if ctype == JSON:
                    if len(body) > limit:
                        raise receiver.too_large(len(body))
                    body = json_to_protobuf(signal, body)
            except IngestError as exc:
                receiver.refused(signal, "http", exc)
                return _error(exc, JSON if ctype == JSON else PROTOBUF)
            try:
                split = await receiver.export(signal, body, headers, "http", principal=principal)
            except IngestError as exc:
                return _error(exc, JSON if ctype == JSON else PROTOBUF)
            if ctype == JSON:
                resp = RESPONSES[signal].FromString(export_response(signal, split))
                return web.Response(body=json_format.MessageToJson(resp, indent=None).encode(), content_type=JSON)
            return web.Response(body=export_response(signal, split), content_type=PROTOBUF)
        return handler

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok = await ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    for signal in REQUESTS:
        app.router.add_post(f"/v1/{signal}", make(signal))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def metrics_app(registry) -> web.Application:
    """Just ``/metrics``, for ``--metrics-port`` (a separate port for scrapers)."""
    app = web.Application()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
    return app
