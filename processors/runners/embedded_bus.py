"""The in-process bus of ``orbitwatch up``: Kafka's role, in one process, with bounded queues.

It implements the gateway's ``Publisher`` protocol (``async publish(topic, records)``), so the very
same OTLP receivers that produce to Kafka in distributed mode produce here. Semantics kept from Kafka:

* every topic is an ordered log with offsets; each consumer (one per processor) has its own
  position, and commits an offset only after it has handled a batch and published what it emitted;
* records are appended to an on-disk segment (:mod:`embedded_log`) *before* ``publish`` returns,
  so an acknowledged export survives a hard kill and is replayed from the committed offsets on start.

Back-pressure, as the design asks (Vector/Benthos): a topic keeps in memory only what some consumer
has not read yet, capped in records and bytes. When a publish from outside (the gateway) would exceed
the cap it raises ``PublishOverloaded`` and the receivers answer RESOURCE_EXHAUSTED / HTTP 429 so
OTLP clients retry later; nothing is dropped silently. Publishes from processors (derived topics)
wait for room instead, because the input they came from is already acknowledged.

A topic nobody consumes in this process (e.g. ``orbitwatch.alerts``, whose content the alert
processor already stores in the ``alerts`` table) is not retained; such records are counted in
``orbitwatch_bus_unrouted_records_total``.

All methods run on the event loop thread.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from orbitwatch.processors.runners.embedded_log import LogRecord, TopicLog

# the gateway's contract (ingest/publisher.py); receivers map these to gRPC/HTTP codes
from orbitwatch.ingest.publisher import PublishOverloaded, PublishUnavailable

log = logging.getLogger("orbitwatch.embedded.bus")

PUBLISHED = Counter("orbitwatch_bus_published_records_total", "records appended to the embedded bus", ["topic"])
OVERLOADED = Counter("orbitwatch_bus_overloaded_total",
                     "publishes refused because the topic's queue was full (answered 429/RESOURCE_EXHAUSTED)",
                     ["topic"])
UNROUTED = Counter("orbitwatch_bus_unrouted_records_total",
                   "records published to a topic no embedded processor consumes (not retained)", ["topic"])
QUEUED = Gauge("orbitwatch_bus_queued_records", "records in memory not yet read by every consumer", ["topic"])


def _headers(h: Any) -> dict[str, bytes]:
    """Accept headers as a dict or a Kafka-style list of (name, value) pairs."""
    if not h:
        return {}
    items = h.items() if isinstance(h, dict) else h
    return {str(k): (v if isinstance(v, bytes) else str(v).encode()) for k, v in items}


class _Topic:
    def __init__(self, name: str, log_: TopicLog | None) -> None:
        self.name = name
        self.log = log_
        self.base = log_.next_offset if log_ else 0  # offset of records[0]
        self.records: deque[LogRecord] = deque()
        self.bytes = 0
        self.positions: dict[str, int] = {}  # consumer -> next offset to read (in memory)
        self.committed: dict[str, int] = {}  # consumer -> durable offset (from checkpoints)

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    def release(self) -> None:
        """Forget records every consumer has read."""
        low = min(self.positions.values(), default=self.end)
        while self.records and self.base < low:
            self.bytes -= self.records.popleft().size()
            self.base += 1
        QUEUED.labels(self.name).set(len(self.records))


class EmbeddedBus:
    """Topic logs + consumer positions. ``data_dir=None`` keeps everything in memory (tests, bench)."""

    def __init__(self, data_dir: Path | None = None, *, prefix: str = "", max_queue_records: int = 50_000,
                 max_queue_bytes: int = 128 << 20, segment_bytes: int = 64 << 20, retry_after_s: float = 0.5) -> None:
        self.dir = Path(data_dir) if data_dir is not None else None
        self.prefix = prefix
        self.max_records = max_queue_records
        self.max_bytes = max_queue_bytes
        self.segment_bytes = segment_bytes
        self.retry_after_s = retry_after_s
        self._topics: dict[str, _Topic] = {}
        self._wakeups: dict[str, asyncio.Event] = {}  # consumer -> "new records" event
        self._room = asyncio.Event()
        self.closed = False
        self.opened = False

    # -- setup ----------------------------------------------------------------------------------
    def _topic(self, name: str) -> _Topic:
        t = self._topics.get(name)
        if t is None:
            lg = TopicLog(self.dir / name, self.segment_bytes) if self.dir is not None else None
            t = self._topics[name] = _Topic(name, lg)
        return t

    def subscribe(self, consumer: str, topics: Iterable[str], committed: dict[str, int] | None = None) -> None:
        """Register ``consumer`` on ``topics``; ``committed`` are its offsets from the last checkpoint."""
        self._wakeups.setdefault(consumer, asyncio.Event())
        for name in topics:
            t = self._topic(name)
            t.committed[consumer] = int((committed or {}).get(name, 0))
            t.positions[consumer] = max(t.committed[consumer], t.base)

    def open(self) -> dict[str, int]:
        """Load what consumers have not committed from the logs into memory; returns replayed counts."""
        replayed: dict[str, int] = {}
        for t in self._topics.values():
            if not t.committed:
                continue
            start = min(t.committed.values())
            if t.log is not None and start < t.log.next_offset:
                t.base = max(start, self._first_offset(t))
                for off, rec in t.log.read_from(t.base):
                    t.records.append(rec)
                    t.bytes += rec.size()
                replayed[t.name] = len(t.records)
            else:
                t.base = t.log.next_offset if t.log else 0
            for c, off in t.committed.items():
                t.positions[c] = max(off, t.base)
            QUEUED.labels(t.name).set(len(t.records))
        self.opened = True
        return replayed

    @staticmethod
    def _first_offset(t: _Topic) -> int:
        for off, _ in t.log.read_from(0):  # type: ignore[union-attr]
            return off
        return t.log.next_offset  # type: ignore[union-attr]

    # -- Publisher protocol (the gateway) -------------------------------------------------------
    def _name(self, topic: str) -> str:
        return topic[len(self.prefix):] if self.prefix and topic.startswith(self.prefix) else topic

    async def publish(self, topic: str, records: Sequence[tuple[bytes | None, bytes, Any]]) -> None:
        """Append ``(key, value, headers)`` records; ``PublishOverloaded`` when the queue is full."""
        if self.closed:
            raise PublishUnavailable(1.0, "orbitwatch is shutting down")
        self._append(self._name(topic), [self._record(r) for r in records], external=True)

    async def start(self) -> None:  # Publisher lifecycle hooks, for symmetry with the Kafka publisher
        return None

    async def stop(self) -> None:
        self.closed = True

    async def ready(self) -> bool:
        return self.opened and not self.closed

    async def partitions(self, topic: str) -> int:
        """One partition per topic: the gateway then forwards a whole request as one record instead
        of one record per trace (the per-record cost dominates otherwise)."""
        return 1

    async def publish_internal(self, topic: str, records: list[LogRecord]) -> None:
        """Append records emitted by a processor; waits for room rather than refusing."""
        name = self._name(topic)
        while True:
            try:
                self._append(name, records, external=False)
                return
            except PublishOverloaded:
                self._room.clear()
                try:
                    await asyncio.wait_for(self._room.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass

    @staticmethod
    def _record(r: Any) -> LogRecord:
        if isinstance(r, LogRecord):
            return r
        key, value, *rest = r
        return LogRecord(value=bytes(value), key=bytes(key) if key is not None else None,
                         headers=_headers(rest[0] if rest else None), timestamp_ms=int(time.time() * 1000))

    def _append(self, name: str, records: list[LogRecord], external: bool) -> None:
        """Append or raise PublishOverloaded when the topic's queue has no room (an empty queue
        always takes the batch, so one oversized batch cannot wedge a topic)."""
        if not records:
            return
        t = self._topics.get(name)
        if t is None or (not t.positions and not t.committed):
            UNROUTED.labels(name).inc(len(records))
            return
        size = sum(r.size() for r in records)
        if t.records and (len(t.records) + len(records) > self.max_records or t.bytes + size > self.max_bytes):
            if external:
                OVERLOADED.labels(name).inc()
            raise PublishOverloaded(self.retry_after_s,
                                    f"queue of {name} is full ({len(t.records)} records, {t.bytes} bytes); retry later")
        if t.log is not None:
            t.log.append(records)  # on disk (page cache) before we acknowledge
        t.records.extend(records)
        t.bytes += size
        PUBLISHED.labels(name).inc(len(records))
        QUEUED.labels(name).set(len(t.records))
        for c in t.positions:
            self._wakeups[c].set()

    # -- consumers (the runner) -----------------------------------------------------------------
    def poll(self, consumer: str, topics: Iterable[str], max_records: int
             ) -> list[tuple[str, int, LogRecord]]:
        """Up to ``max_records`` unread (topic, offset, record) for ``consumer``, oldest topic first."""
        out: list[tuple[str, int, LogRecord]] = []
        for name in topics:
            t = self._topics[name]
            pos = t.positions[consumer]
            while pos < t.end and len(out) < max_records:
                out.append((name, pos, t.records[pos - t.base]))
                pos += 1
        return out

    def pending(self, consumer: str, topics: Iterable[str]) -> int:
        return sum(self._topics[n].end - self._topics[n].positions[consumer] for n in topics)

    async def wait(self, consumer: str, timeout: float) -> None:
        ev = self._wakeups[consumer]
        if ev.is_set():
            ev.clear()
            return
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        ev.clear()

    def advance(self, consumer: str, positions: dict[str, int]) -> None:
        """The consumer is done with everything below ``positions`` (in memory, not yet durable)."""
        for name, pos in positions.items():
            t = self._topics[name]
            t.positions[consumer] = max(t.positions[consumer], pos)
            t.release()
        self._room.set()

    def positions(self, consumer: str, topics: Iterable[str]) -> dict[str, int]:
        return {n: self._topics[n].positions[consumer] for n in topics}

    def commit(self, consumer: str, offsets: dict[str, int]) -> None:
        """Offsets are now durable in the consumer's checkpoint: drop log segments nobody needs."""
        for name, off in offsets.items():
            t = self._topics[name]
            t.committed[consumer] = off
            if t.log is not None:
                t.log.truncate_before(min(t.committed.values()))

    def idle(self) -> bool:
        """Every consumer has read every record (used by drain)."""
        return all(all(p >= t.end for p in t.positions.values()) for t in self._topics.values())

    def stats(self) -> dict[str, dict[str, int]]:
        return {n: {"end": t.end, "queued": len(t.records), "bytes": t.bytes,
                    **{f"pos:{c}": p for c, p in t.positions.items()}} for n, t in self._topics.items()}

    def close(self) -> None:
        self.closed = True
        for t in self._topics.values():
            if t.log is not None:
                t.log.sync()
                t.log.close()
