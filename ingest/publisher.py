"""Where the gateway hands accepted records: the :class:`Publisher` protocol and its Kafka implementation.

The gateway never talks to Kafka directly; it calls ``await publisher.publish(topic, records)`` and
answers the OTLP client OK only when that returns. That one seam lets the embedded all-in-one mode
(``orbitwatch up``) swap Kafka for in-process queues without touching the receive path.

Contract every implementation keeps:

* ``topic`` is the catalogue name from :mod:`orbitwatch.schemas.topics` (``"otlp.traces"``), without
  any prefix; the publisher applies its own prefix.
* ``publish`` returns only when **every** record is durably accepted (Kafka: acked by ``acks=all``).
* It raises :class:`PublishUnavailable` when the bus cannot take records now (the gateway answers
  gRPC ``UNAVAILABLE`` / HTTP 503 so OTLP clients retry) and :class:`PublishOverloaded` when it is
  saturated (``RESOURCE_EXHAUSTED`` / HTTP 429). Both carry ``retry_after_s``.
* It never acknowledges what it did not write. :class:`KafkaPublisher` goes further: when a publish
  times out it abandons the producer holding the undelivered records, so that what we answered
  UNAVAILABLE for is not written later behind the client's back (its retry would duplicate it).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
import zlib
from typing import Protocol, runtime_checkable

from orbitwatch.schemas.topics import LOGS, METRICS, TRACES, Topic, topic_name

log = logging.getLogger("orbitwatch.ingest.publisher")

# (key, value, headers): key None lets the bus choose the partition.
Record = tuple[bytes | None, bytes, dict[str, bytes]]


class PublishError(Exception):
    """The records were not accepted; ``retry_after_s`` tells the client when to try again."""

    def __init__(self, retry_after_s: float, message: str = "") -> None:
        super().__init__(message or type(self).__name__)
        self.retry_after_s = retry_after_s


class PublishUnavailable(PublishError):
    """The bus is down or did not acknowledge in time (→ gRPC UNAVAILABLE / HTTP 503)."""


class PublishOverloaded(PublishError):
    """Too many bytes are waiting for the bus (→ gRPC RESOURCE_EXHAUSTED / HTTP 429)."""


@runtime_checkable
class Publisher(Protocol):
    """What the gateway needs from a message bus."""

    async def start(self) -> None:
        """Connect. Must not fail just because the bus is down: keep retrying and report via ready()."""

    async def stop(self) -> None:
        """Flush what was accepted for publishing and release connections."""

    async def ready(self) -> bool:
        """True when a publish issued now is expected to succeed (drives ``/readyz``)."""

    async def publish(self, topic: str, records: list[Record]) -> None:
        """Durably write all ``records`` to catalogue topic ``topic``; raise PublishError if not."""

    # Optional: ``async def partitions(self, topic: str) -> int | None``. When a publisher has it and
    # places keyed records with :func:`key_partition`, the gateway packs the traces of a request that
    # share a partition into one record (far fewer, larger records); without it, one record per trace.


def key_partition(key: bytes, partitions: int) -> int:
    """The partition of a keyed record: ``crc32(key) mod partitions``.

    Used by :class:`KafkaPublisher` (instead of Kafka's default murmur2, which costs ~6 µs per key in
    pure Python) and by the trace splitter, which groups the traces of one request that share a
    partition into one record. Every gateway instance uses the same function, so a trace keeps to
    one partition across requests and instances."""
    return zlib.crc32(key) % partitions


def _partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    if key is None:
        return random.choice(available or all_partitions)
    return key_partition(key, len(all_partitions))  # Kafka partition ids are 0..n-1


def record_size(records: list[Record]) -> int:
    """Bytes a batch of records holds in memory (key + value + headers)."""
    return sum(len(v) + (len(k) if k else 0) + sum(len(h) + len(b) for h, b in hdr.items())
               for k, v, hdr in records)


class KafkaPublisher:
    """:class:`Publisher` over aiokafka: idempotent, ``acks=all``, compressed, lingering.

    Throughput comes from never awaiting one delivery before queueing the next: all records of a
    publish call are appended to the producer's accumulator, then their delivery futures are
    gathered, so concurrent requests share Kafka batches.

    Failure handling: a publish that is not acknowledged within ``delivery_timeout_s`` raises
    :class:`PublishUnavailable`; the producer that holds the undelivered records is abandoned (its
    batches are failed, not retried later) and a background task reconnects every
    ``reconnect_interval_s``.
    While disconnected, publish fails fast without queueing anything.
    """

    def __init__(self, bootstrap: str, topic_prefix: str = "", *, compression: str = "lz4",
                 linger_ms: int = 5, max_batch_size: int = 256 * 1024, max_request_size: int = 1_048_576,
                 delivery_timeout_s: float = 5.0, connect_timeout_s: float = 5.0, retry_after_s: float = 1.0,
                 reconnect_interval_s: float = 1.0,
                 max_pending_bytes: int = 128 * 1024 * 1024, create_topics: bool = True,
                 topics: tuple[Topic, ...] = (TRACES, METRICS, LOGS), client_id: str = "orbitwatch-gateway",
                 ssl_context: object | None = None) -> None:
        if compression not in ("lz4", "zstd", "gzip", "snappy", "none"):
            raise ValueError(f"unsupported Kafka compression {compression!r}")
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.compression = None if compression == "none" else compression
        self.linger_ms = linger_ms
        self.max_batch_size = max_batch_size
        self.max_request_size = max_request_size
        self.delivery_timeout_s = delivery_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retry_after_s = retry_after_s
        self.reconnect_interval_s = reconnect_interval_s
        self.max_pending_bytes = max_pending_bytes
        self.create_topics = create_topics
        self.topics = topics
        self.client_id = client_id
        self.ssl_context = ssl_context
        self._producer = None  # AIOKafkaProducer when connected
        self._pending_bytes = 0
        self._reconnect: asyncio.Task | None = None
        self._stopping = False
        self._topics_created = False
        self.last_error = ""

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    async def start(self) -> None:
        self._stopping = False
        if not await self._connect():
            self._schedule_reconnect()

    async def stop(self) -> None:
        self._stopping = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            try:
                await self._reconnect
            except (asyncio.CancelledError, Exception):
                pass
            self._reconnect = None
        producer, self._producer = self._producer, None
        if producer is not None:
            try:  # flush what is queued; bounded so a dead broker cannot hang shutdown
                await asyncio.wait_for(producer.stop(), self.delivery_timeout_s)
            except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - shutdown must finish
                log.warning("kafka producer did not flush on stop: %s", exc)
                await self._abandon(producer, "publisher stopped")

    async def ready(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), self.connect_timeout_s)
            return True
        except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - any failure means not ready
            self.last_error = str(exc) or type(exc).__name__
            return False

    async def partitions(self, topic: str) -> int | None:
        """Partition count of catalogue topic ``topic`` from cached metadata; None when unknown."""
        producer = self._producer
        if producer is None:
            return None
        parts = producer.client.cluster.partitions_for_topic(topic_name(topic, self.topic_prefix))
        return len(parts) if parts else None

    async def publish(self, topic: str, records: list[Record]) -> None:
        if not records:
            return
        producer = self._producer
        if producer is None:
            raise PublishUnavailable(self.retry_after_s, f"Kafka at {self.bootstrap} is not reachable"
                                     + (f": {self.last_error}" if self.last_error else ""))
        size = record_size(records)
        if self._pending_bytes and self._pending_bytes + size > self.max_pending_bytes:
            raise PublishOverloaded(self.retry_after_s, f"{self._pending_bytes} bytes already waiting for Kafka")
        from aiokafka.errors import KafkaError

        name = topic_name(topic, self.topic_prefix)
        self._pending_bytes += size
        try:
            async with asyncio.timeout(self.delivery_timeout_s):
                # Queue everything first (send() only appends to the accumulator), then wait once.
                futures = [await producer.send(name, value=value, key=key, headers=list(headers.items()))
                           for key, value, headers in records]
                await asyncio.gather(*futures)
        except TimeoutError:
            msg = f"Kafka did not acknowledge within {self.delivery_timeout_s:g}s"
            self._fail(producer, msg)
            raise PublishUnavailable(self.retry_after_s, msg) from None
        except KafkaError as exc:
            msg = f"Kafka error: {type(exc).__name__}: {exc}"
            if getattr(exc, "retriable", False) or producer is not self._producer:
                self._fail(producer, msg)
                raise PublishUnavailable(self.retry_after_s, msg) from None
            raise
        finally:
            self._pending_bytes -= size

    # -- connection management -------------------------------------------------------------

    def _new_producer(self):
        from aiokafka import AIOKafkaProducer

        kw = {"ssl_context": self.ssl_context, "security_protocol": "SSL"} if self.ssl_context else {}
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, client_id=self.client_id, acks="all", enable_idempotence=True,
            compression_type=self.compression, linger_ms=self.linger_ms, max_batch_size=self.max_batch_size,
            partitioner=_partitioner,
            max_request_size=self.max_request_size,
            request_timeout_ms=int(max(self.delivery_timeout_s, 1.0) * 1000), retry_backoff_ms=100, **kw)

    async def _connect(self) -> bool:
        from aiokafka.errors import KafkaError

        producer = self._new_producer()
        try:
            await asyncio.wait_for(producer.start(), self.connect_timeout_s)
            if self.create_topics and not self._topics_created:
                from orbitwatch.ingest.kafka_admin import create_topics
                await asyncio.wait_for(create_topics(self.bootstrap, self.topics, prefix=self.topic_prefix),
                                       self.connect_timeout_s * 3)
                self._topics_created = True
            for t in self.topics:  # load partition metadata now, so partitions() knows from the first request
                try:
                    await asyncio.wait_for(producer.partitions_for(topic_name(t, self.topic_prefix)),
                                           self.connect_timeout_s)
                except (asyncio.TimeoutError, KafkaError) as exc:
                    log.warning("no metadata for topic %s yet: %s", topic_name(t, self.topic_prefix), exc)
        except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - any failure: stay down, retry
            self.last_error = str(exc) or type(exc).__name__
            log.warning("kafka connect to %s failed: %s", self.bootstrap, self.last_error)
            await self._abandon(producer, "connect failed")
            return False
        if self._stopping:
            await producer.stop()
            return False
        self._producer = producer
        self.last_error = ""
        log.info("kafka producer connected to %s", self.bootstrap)
        return True

    def _fail(self, producer, reason: str) -> None:
        """Take ``producer`` out of service: fail its queued records and reconnect in the background."""
        self.last_error = reason
        if producer is self._producer:
            self._producer = None
            log.warning("kafka producer abandoned: %s", reason)
            asyncio.get_running_loop().create_task(self._abandon(producer, reason))
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._stopping or (self._reconnect is not None and not self._reconnect.done()):
            return
        self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        while not self._stopping and self._producer is None:
            await asyncio.sleep(self.reconnect_interval_s)
            if await self._connect():
                return

    @staticmethod
    async def _abandon(producer, reason: str) -> None:
        """Drop a producer without flushing. aiokafka has no public "abort" for an idempotent
        producer (its batches retry forever), so we fail the queued batches and stop its sender task
        and connections directly."""
        from aiokafka.errors import KafkaConnectionError

        t0 = time.monotonic()
        try:
            producer._closed = True
            producer._message_accumulator.fail_all(KafkaConnectionError(f"producer abandoned: {reason}"))
            if producer._sender is not None:
                await producer._sender.close()
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - best effort teardown
            pass
        try:
            await producer.client.close()
        except Exception:  # noqa: BLE001
            pass
        log.debug("abandoned kafka producer in %.3fs", time.monotonic() - t0)
