"""The embedded runner: drives any list of :class:`~orbitwatch.processors.base.Processor` over the
in-process bus exactly as the Kafka runner drives them over Kafka.

Per processor: one consumer over its input topics with its own positions; batches of up to
``max_batch`` records (when fewer than ``min_batch`` wait, it first lingers ``linger`` seconds for a
fuller batch, so ClickHouse gets few, large inserts); ``handle`` in an executor thread (it blocks on ClickHouse); the returned emits are
published back onto the bus *before* the input offsets advance (at-least-once, like Kafka);
``tick(now)`` every ``tick_interval`` seconds; and every ``checkpoint_interval`` seconds a checkpoint
``{"offsets": ..., "state": processor.snapshot()}`` written atomically (temp file + fsync + rename)
to ``<data dir>/state/<processor name>.json``. Offsets and state are taken at the same point
between two batches, so a restart restores a consistent pair and replays the log from there.

Failures: :class:`RetryableError` (ClickHouse away) backs off and re-delivers the same batch; any
other exception from ``handle`` re-runs the batch one message at a time and sends the messages that
still fail to ``orbitwatch.dlq`` with the reason in the ``orbitwatch-error`` header, so one bad record
never stops a stream. In embedded mode :class:`DeadLetterStore` keeps the DLQ in the ``dead_letters``
table (migration 0050), so it is inspectable with ``orbitwatch sql``.

Shutdown (:meth:`EmbeddedRunner.stop`): after the receivers stopped accepting, :meth:`drain` waits
until every consumer has read every record (emits included), then a last checkpoint per processor.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram

from orbitwatch.processors.base import Emit, Message, Processor, RetryableError
from orbitwatch.processors.runners.embedded_bus import EmbeddedBus, PublishOverloaded, PublishUnavailable
from orbitwatch.processors.runners.embedded_log import LogRecord

__all__ = ["EmbeddedBus", "EmbeddedRunner", "DeadLetterStore", "PublishOverloaded", "PublishUnavailable"]

log = logging.getLogger("orbitwatch.embedded")

DLQ_TOPIC = "orbitwatch.dlq"
ERROR_HEADER = "orbitwatch-error"
SOURCE_HEADER = "orbitwatch-source"

HANDLED = Counter("orbitwatch_embedded_handled_records_total", "records handled per processor", ["processor"])
EMITTED = Counter("orbitwatch_embedded_emitted_records_total", "records emitted per processor and topic",
                  ["processor", "topic"])
FAILED = Counter("orbitwatch_embedded_failures_total",
                 "handle/tick failures per processor (retryable: re-delivered; other: messages sent to the DLQ)",
                 ["processor", "kind"])
BATCH_SECONDS = Histogram("orbitwatch_embedded_batch_seconds", "handle() duration per batch", ["processor"])


class DeadLetterStore:
    """Consumes ``orbitwatch.dlq`` in embedded mode and keeps every dead letter in ``dead_letters``
    (in distributed mode the Kafka topic itself is the store)."""

    name = "dead_letters"
    topics = (DLQ_TOPIC,)
    COLUMNS = ("received_at", "source", "error", "key", "value", "headers")

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def handle(self, batch: list[Message]) -> list[Emit]:
        rows = []
        for m in batch:
            headers = {k: v.decode(errors="replace") for k, v in m.headers.items()}
            rows.append([datetime.fromtimestamp(m.timestamp_ms / 1000, timezone.utc),
                         headers.get(SOURCE_HEADER, ""), headers.get(ERROR_HEADER, ""),
                         (m.key or b"").decode(errors="replace"), m.value, headers])
        try:
            self.storage.insert_rows("dead_letters", self.COLUMNS, rows,
                                     dedup_token=f"dlq-{batch[0].offset}-{len(batch)}" if batch else None)
        except Exception as exc:
            raise RetryableError(str(exc)) from exc
        return []

    def tick(self, now: float) -> list[Emit]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _call_close(close: Any, grace: float) -> Any:
    """``close(grace)`` when the processor's close takes a time budget (drain / wait seconds)."""
    import inspect
    try:
        params = [p for p in inspect.signature(close).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return close(grace) if params else close()


class _Driver:
    """One processor's consumer loop."""

    def __init__(self, runner: "EmbeddedRunner", proc: Processor) -> None:
        self.runner = runner
        self.proc = proc
        self.name = proc.name
        self.topics = tuple(proc.topics)
        self.busy = False
        self.last_tick = 0.0
        self.last_checkpoint = time.monotonic()
        self.dirty = False
        self.task: asyncio.Task | None = None
        self.checkpoint_path = runner.state_dir / f"{self.name}.json" if runner.state_dir else None

    # -- state ----------------------------------------------------------------------------------
    def load_checkpoint(self) -> dict[str, int]:
        """Restore state and return the committed offsets. A checkpoint that cannot be read is moved
        aside (``.corrupt-<time>``) and the processor replays the retained log from the start; a
        state its ``restore`` rejects (e.g. after an incompatible upgrade) is dropped, keeping the
        offsets — both are logged as errors, as the faust runner does, rather than refusing to start."""
        if not self.checkpoint_path or not self.checkpoint_path.exists():
            return {}
        try:
            cp = json.loads(self.checkpoint_path.read_text())
            offsets = {k: int(v) for k, v in cp.get("offsets", {}).items()}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            aside = self.checkpoint_path.with_name(f"{self.checkpoint_path.name}.corrupt-{int(time.time())}")
            self.checkpoint_path.rename(aside)
            FAILED.labels(self.name, "checkpoint").inc()
            log.error("processor %s: checkpoint unreadable (%s); moved to %s, replaying the retained log",
                      self.name, exc, aside)
            return {}
        if cp.get("state"):
            try:
                self.proc.restore(cp["state"])
            except Exception as exc:
                FAILED.labels(self.name, "checkpoint").inc()
                log.error("processor %s: restore() rejected the saved state (%s: %s); starting with empty state",
                          self.name, type(exc).__name__, exc)
        return offsets

    async def checkpoint(self) -> None:
        bus = self.runner.bus
        offsets = bus.positions(self.name, self.topics)
        state = await self.runner.call(self.proc.snapshot)
        if self.checkpoint_path is not None:
            data = json.dumps({"processor": self.name, "offsets": offsets, "state": state,
                               "saved_at": time.time()}, default=str).encode()
            await self.runner.call(_write_atomic, self.checkpoint_path, data)
        bus.commit(self.name, offsets)
        self.last_checkpoint = time.monotonic()
        self.dirty = False

    # -- loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        r = self.runner
        while not r.stopping:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one processor's bug kill the loop; it is counted and logged
                FAILED.labels(self.name, "runner").inc()
                log.exception("processor %s: step failed; retrying in 1 s", self.name)
                await asyncio.sleep(1.0)

    async def step(self) -> None:
        r, bus = self.runner, self.runner.bus
        now = time.monotonic()
        if now - self.last_tick >= r.tick_interval:
            await self.tick()
        if self.dirty and now - self.last_checkpoint >= r.checkpoint_interval:
            await self.checkpoint()
        if bus.pending(self.name, self.topics) == 0:
            timeout = max(0.01, r.tick_interval - (time.monotonic() - self.last_tick))
            await bus.wait(self.name, timeout)
            return
        if r.linger and bus.pending(self.name, self.topics) < r.min_batch:
            await asyncio.sleep(r.linger)  # a trickle: wait a little for a fuller batch
        batch = bus.poll(self.name, self.topics, r.max_batch)
        if batch:
            await self.handle(batch)

    async def handle(self, batch: list[tuple[str, int, LogRecord]]) -> None:
        r, bus = self.runner, self.runner.bus
        msgs = [Message(topic=t, value=rec.value, key=rec.key, headers=rec.headers, partition=0, offset=off,
                        timestamp_ms=rec.timestamp_ms) for t, off, rec in batch]
        self.busy = True
        try:
            emits = await self._handle_with_retry(msgs)
            await r.publish(self.name, emits)
        finally:
            self.busy = False
        ends: dict[str, int] = {}
        for t, off, _ in batch:
            ends[t] = off + 1
        bus.advance(self.name, ends)
        HANDLED.labels(self.name).inc(len(batch))
        self.dirty = True

    async def _handle_with_retry(self, msgs: list[Message]) -> list[Emit]:
        delay = 0.2
        while True:
            t0 = time.perf_counter()
            try:
                out = await self.runner.call(self.proc.handle, msgs)
                BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - t0)
                return list(out or [])
            except RetryableError as exc:
                FAILED.labels(self.name, "retryable").inc()
                log.warning("processor %s: %s; retrying the batch in %.1f s", self.name, exc, delay)
                if self.runner.stopping and self.runner.abandon_retries:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except Exception as exc:
                FAILED.labels(self.name, "error").inc()
                if len(msgs) == 1:
                    log.warning("processor %s: message %s@%d -> DLQ: %s", self.name, msgs[0].topic,
                                msgs[0].offset, exc)
                    return [self._dead_letter(msgs[0], exc)]
                log.warning("processor %s: batch failed (%s); re-running it one message at a time",
                            self.name, exc)
                out: list[Emit] = []
                for m in msgs:
                    out.extend(await self._handle_with_retry([m]))
                return out

    def _dead_letter(self, m: Message, exc: BaseException) -> Emit:
        reason = f"{self.name}: {type(exc).__name__}: {exc}"[:1000]
        return Emit(topic=DLQ_TOPIC, value=m.value, key=m.key,
                    headers={**m.headers, ERROR_HEADER: reason.encode(),
                             SOURCE_HEADER: f"{m.topic}/{m.partition}/{m.offset}".encode()})

    async def tick(self) -> None:
        self.last_tick = time.monotonic()
        try:
            emits = await self.runner.call(self.proc.tick, time.time())
        except Exception as exc:
            FAILED.labels(self.name, "tick").inc()
            log.warning("processor %s: tick failed: %s", self.name, exc)
            return
        if emits:
            await self.runner.publish(self.name, list(emits))
            self.dirty = True


class EmbeddedRunner:
    """Run ``processors`` over ``bus``; ``state_dir=None`` keeps no checkpoints (tests, bench)."""

    def __init__(self, bus: EmbeddedBus, processors: list[Processor], state_dir: Path | None = None, *,
                 tick_interval: float = 1.0, checkpoint_interval: float = 1.0, max_batch: int = 500,
                 min_batch: int = 8, linger: float = 0.05, threads: int | None = None) -> None:
        names = [p.name for p in processors]
        if len(set(names)) != len(names):
            raise ValueError(f"processor names must be unique, got {names}")
        self.bus = bus
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.tick_interval = tick_interval
        self.checkpoint_interval = checkpoint_interval
        self.max_batch = max_batch
        self.min_batch = min_batch
        self.linger = linger
        self.stopping = False
        self.abandon_retries = False
        self.close_grace = 5.0  # seconds a processor's optional close() may take to flush
        self.drivers = [_Driver(self, p) for p in processors]
        self._executor = ThreadPoolExecutor(max_workers=threads or max(2, len(processors)),
                                            thread_name_prefix="orbitwatch-proc")
        self.replayed: dict[str, int] = {}

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def publish(self, source: str, emits: list[Emit]) -> None:
        by_topic: dict[str, list[LogRecord]] = {}
        now_ms = int(time.time() * 1000)
        for e in emits:
            by_topic.setdefault(e.topic, []).append(
                LogRecord(value=e.value, key=e.key, headers=dict(e.headers), timestamp_ms=now_ms))
        for topic, recs in by_topic.items():
            await self.bus.publish_internal(topic, recs)
            EMITTED.labels(source, topic).inc(len(recs))

    async def start(self) -> dict[str, int]:
        """Restore checkpoints, subscribe, replay the logs; returns records replayed per topic."""
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        for d in self.drivers:
            offsets = await self.call(d.load_checkpoint)
            self.bus.subscribe(d.name, d.topics, offsets)
        self.replayed = self.bus.open()
        if any(self.replayed.values()):
            log.info("replaying records acknowledged before the last stop: %s", self.replayed)
        for d in self.drivers:
            d.task = asyncio.create_task(d.run(), name=f"processor:{d.name}")
        return self.replayed

    async def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every record (emits included) has been handled; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.bus.idle() and not any(d.busy for d in self.drivers):
                await asyncio.sleep(0.05)  # an emit may be on its way between handle and publish
                if self.bus.idle() and not any(d.busy for d in self.drivers):
                    return True
            await asyncio.sleep(0.05)
        return False

    async def stop(self, drain_timeout: float = 30.0) -> bool:
        """Drain, stop the loops and checkpoint every processor (open windows live on in its state)."""
        drained = await self.drain(drain_timeout)
        if not drained:
            log.warning("drain timed out after %.0f s; what is left stays in the bus log and is replayed "
                        "on the next start", drain_timeout)
        self.stopping = True
        self.abandon_retries = True
        for d in self.drivers:
            if d.task is not None:
                d.task.cancel()
        await asyncio.gather(*(d.task for d in self.drivers if d.task is not None), return_exceptions=True)
        for d in self.drivers:
            close = getattr(d.proc, "close", None)
            if callable(close):  # optional: flush in-flight work (evals: judge calls; alerts: the outbox)
                try:
                    emits = await self.call(_call_close, close, self.close_grace)
                    if emits:  # consumers have stopped: these stay in the bus log for the next start
                        await asyncio.wait_for(self.publish(d.name, list(emits)), 10)
                except Exception:
                    log.exception("processor %s: close failed", d.name)
            try:
                await d.checkpoint()
            except Exception:
                log.exception("processor %s: final checkpoint failed", d.name)
        self._executor.shutdown(wait=True)
        return drained
