"""The contract between processor logic and the two runners that drive it.

A :class:`Processor` is a plain object. A runner (``runners/faust_app.py`` over Kafka, or
``runners/embedded.py`` over in-process queues) feeds it batches of :class:`Message` from its
input topics, calls :meth:`Processor.tick` periodically, publishes the :class:`Emit` records it
returns, and persists :meth:`Processor.snapshot` so a restart resumes where it stopped.

Delivery is at-least-once: the runner commits input offsets only after ``handle`` returned and
its emits were published, so ``handle`` must tolerate seeing a message twice (idempotent writes).
``handle`` and ``tick`` may block (ClickHouse calls); runners call them from an executor thread.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(slots=True)
class Message:
    topic: str  # catalogue name without prefix, e.g. "otlp.traces"
    value: bytes
    key: bytes | None = None
    headers: dict[str, bytes] = field(default_factory=dict)
    partition: int = 0
    offset: int = 0
    timestamp_ms: int = 0

    @property
    def tenant(self) -> str:
        from orbitwatch.schemas.attributes import TENANT_HEADER
        return self.headers.get(TENANT_HEADER, b"").decode()


@dataclass(slots=True)
class Emit:
    topic: str  # catalogue name without prefix
    value: bytes
    key: bytes | None = None
    headers: dict[str, bytes] = field(default_factory=dict)


class RetryableError(Exception):
    """A dependency (ClickHouse) is unavailable: the runner backs off and re-delivers the same
    batch later, without committing offsets. Anything else that ``handle`` raises for one message
    should instead be turned into a DLQ emit by the processor, so the stream continues."""


@runtime_checkable
class Processor(Protocol):
    name: str  # stable: consumer group and state key
    topics: tuple[str, ...]  # input topics (catalogue names)

    def handle(self, batch: list[Message]) -> list[Emit]:
        """Process a batch (all from one runner poll, possibly several topics/partitions)."""
        ...

    def tick(self, now: float) -> list[Emit]:
        """Called every ~second with wall-clock time: close windows, emit provisional results,
        run schedules. Return nothing when there is nothing to do."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state to persist (empty for stateless processors)."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        ...
