"""The transport-independent heart of the gateway: one Export request in, an acknowledgement out.

Both listeners (gRPC and HTTP) call :meth:`Receiver.export` with the raw (already decompressed)
protobuf body and the request headers. The order of checks is deliberate: authenticate before
spending CPU on decoding, enforce the size and in-flight limits before holding memory, decode and
split, then publish and answer OK only after the bus acknowledged every record.

Every refusal is an :class:`IngestError` with a gRPC code, an HTTP status and a message fit to show
the client; nothing here raises a traceback for something the client did.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from orbitwatch.ingest.auth import Auth, AuthError
from orbitwatch.ingest.metrics import GatewayMetrics
from orbitwatch.ingest.publisher import PublishError, PublishOverloaded, Publisher
from orbitwatch.ingest.split import DEFAULT_MAX_RECORD_BYTES, SPLITTERS, MalformedRequest, Split, split_traces
from orbitwatch.schemas.attributes import PROJECT_HEADER, SCHEMA_HEADER, SCHEMA_VERSION, TENANT_HEADER
from orbitwatch.schemas.topics import LOGS, METRICS, TRACES

log = logging.getLogger("orbitwatch.ingest")

TOPICS = {"traces": TRACES.name, "metrics": METRICS.name, "logs": LOGS.name}
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # the OpenTelemetry Collector's default too
DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Refusal:
    """How one kind of refusal is spelled on each transport."""

    name: str  # the ``code`` label of orbitwatch_gateway_requests_total
    grpc: str  # grpc.StatusCode member name
    http: int


INVALID = Refusal("INVALID_ARGUMENT", "INVALID_ARGUMENT", 400)
UNAUTHENTICATED = Refusal("UNAUTHENTICATED", "UNAUTHENTICATED", 401)
TOO_LARGE = Refusal("TOO_LARGE", "RESOURCE_EXHAUSTED", 413)
OVERLOADED = Refusal("OVERLOADED", "RESOURCE_EXHAUSTED", 429)
UNAVAILABLE = Refusal("UNAVAILABLE", "UNAVAILABLE", 503)


class IngestError(Exception):
    """The request is refused as a whole; ``retry_after_s`` is set when retrying later makes sense."""

    def __init__(self, refusal: Refusal, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def retry_after_header(self) -> str | None:
        return None if self.retry_after_s is None else str(max(1, math.ceil(self.retry_after_s)))


class Receiver:
    def __init__(self, publisher: Publisher, auth: Auth, metrics: GatewayMetrics, *,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, retry_after_s: float = 1.0) -> None:
        self.publisher = publisher
        self.auth = auth
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self.max_inflight_bytes = max_inflight_bytes
        self.max_record_bytes = max_record_bytes
        self.retry_after_s = retry_after_s
        self.inflight_bytes = 0
        self.inflight_requests = 0

    def too_large(self, size: int | None) -> IngestError:
        got = f"{size} bytes" if size is not None else "larger than the limit"
        return IngestError(TOO_LARGE, f"request is {got}; the gateway accepts at most {self.max_message_bytes} "
                                      f"bytes per request (--max-message-bytes); send smaller batches")

    def authenticate(self, headers: Mapping[str, str]):
        try:
            return self.auth.authenticate(headers)
        except AuthError as exc:
            raise IngestError(UNAUTHENTICATED, str(exc)) from None

    async def _partitions(self, topic: str) -> int | None:
        """The topic's partition count if the publisher can tell (see Publisher), else None."""
        fn = getattr(self.publisher, "partitions", None)
        if fn is None:
            return None
        try:
            return await fn(topic)
        except Exception:  # noqa: BLE001 - unknown count only means one record per trace
            return None

    async def export(self, signal: str, body: bytes, headers: Mapping[str, str], transport: str,
                     principal=None) -> Split:
        """Authenticate (unless ``principal`` is given), validate, split and publish one request.

        Returns the :class:`Split` (for partial success); raises :class:`IngestError`."""
        m = self.metrics
        m.request_bytes.labels(signal, transport).inc(len(body))
        try:
            split = await self._export(signal, body, headers, principal)
        except IngestError as exc:
            self.refused(signal, transport, exc)
            raise
        m.requests.labels(signal, transport, "OK").inc()
        return split

    def refused(self, signal: str, transport: str, exc: IngestError) -> None:
        """Count and log a refusal (one structured line, no traceback: it is the client's problem)."""
        self.metrics.requests.labels(signal, transport, exc.refusal.name).inc()
        log.info("export refused", extra={"signal": signal, "transport": transport, "code": exc.refusal.grpc,
                                          "http_status": exc.refusal.http, "reason": exc.message})

    async def _export(self, signal: str, body: bytes, headers: Mapping[str, str], principal) -> Split:
        m = self.metrics
        if principal is None:
            principal = self.authenticate(headers)
        size = len(body)
        if size > self.max_message_bytes:
            raise self.too_large(size)
        if self.inflight_bytes and self.inflight_bytes + size > self.max_inflight_bytes:
            raise IngestError(OVERLOADED, f"gateway is at its in-flight limit ({self.max_inflight_bytes} bytes "
                                          f"awaiting Kafka); retry later", self.retry_after_s)
        self.inflight_bytes += size
        self.inflight_requests += 1
        m.inflight_bytes.inc(size)
        try:
            try:
                if signal == "traces":
                    split = split_traces(body, self.max_record_bytes, await self._partitions(TOPICS[signal]))
                else:
                    split = SPLITTERS[signal](body, self.max_record_bytes)
            except MalformedRequest as exc:
                raise IngestError(INVALID, str(exc)) from None
            m.received.labels(signal).inc(split.received)
            for reason, n in split.rejected.items():
                m.rejected.labels(signal, reason).inc(n)
            if split.records:
                hdrs = {TENANT_HEADER: principal.tenant.encode(), SCHEMA_HEADER: SCHEMA_VERSION.encode()}
                if principal.project:
                    hdrs[PROJECT_HEADER] = principal.project.encode()
                t0 = time.perf_counter()
                try:
                    await self.publisher.publish(TOPICS[signal], [(k, v, hdrs) for k, v in split.records])
                except PublishError as exc:
                    kind = "overloaded" if isinstance(exc, PublishOverloaded) else "unavailable"
                    m.kafka_errors.labels(kind).inc()
                    m.rejected.labels(signal, kind).inc(split.accepted)
                    refusal = OVERLOADED if isinstance(exc, PublishOverloaded) else UNAVAILABLE
                    raise IngestError(refusal, f"not accepted, retry later: {exc}", exc.retry_after_s) from None
                except Exception as exc:  # a bug or an unexpected bus error: the client may retry
                    m.kafka_errors.labels("error").inc()
                    m.rejected.labels(signal, "unavailable").inc(split.accepted)
                    log.exception("publish failed")
                    raise IngestError(UNAVAILABLE, f"publish failed: {type(exc).__name__}", self.retry_after_s) \
                        from None
                m.produce_seconds.labels(signal).observe(time.perf_counter() - t0)
                m.records.labels(signal).inc(len(split.records))
            m.accepted.labels(signal).inc(split.accepted)
            return split
        finally:
            self.inflight_bytes -= size
            self.inflight_requests -= 1
            m.inflight_bytes.dec(size)
