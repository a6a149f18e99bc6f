"""The faust-streaming runner: drives any list of :class:`~orbitwatch.processors.base.Processor` over Kafka.

Shape (one faust ``App`` per worker process, one agent per processor):

* **Consumer group.** The app id — and so the Kafka consumer group — is
  ``<topic_prefix>orbitwatch-<processor names joined by "-">`` (e.g. ``orbitwatch-sink-drift-evals-alerts``),
  or ``--group``. Why one app and not one app per processor: the embedded ClickHouse (chdb) can be open
  in one process only, so all processors of a worker share one process, and a faust app has one
  consumer. Offsets are per (group, topic, partition) and processors read disjoint topics, so each
  processor still has its own committed position; workers started with the same ``--only`` set share
  the load (Kafka partitions = parallelism), a worker with a different set forms its own group.
* **Batches.** ``stream.noack_take(batch_size, within=batch_seconds)``; the events are converted to
  :class:`~orbitwatch.processors.base.Message` and ``handle`` runs in a single executor thread
  (ClickHouse/chdb calls block).
* **At-least-once, verified against faust's source.** faust commits only *acked* offsets
  (``broker_commit_interval``), contiguously. ``take``/``take_events`` ack the buffered events in a
  ``finally`` — also when the agent is cancelled mid-batch at shutdown — so we use ``noack_take`` and
  ack each event ourselves, only after ``handle`` returned and every emit was delivered (acks=all, the
  runner's own idempotent producer). Until then: on
  :class:`~orbitwatch.processors.base.RetryableError` the runner backs off (0.5 s doubling to 30 s) and
  re-delivers the same batch; a publish failure (Kafka down) is retried without re-handling; any other
  error re-runs the batch one message at a time and sends only the message that still fails to
  ``orbitwatch.dlq`` (header ``orbitwatch-error``); on shutdown the in-flight batch stays unacked. A crash
  (SIGKILL) leaves offsets uncommitted and Kafka re-delivers; processors write idempotently
  (ReplacingMergeTree + insert dedup tokens), so replays are invisible to queries.
  Known faust caveat (not fixable from here): during a rebalance faust skips *and acks* messages it had
  fetched under the previous generation; if the partition comes back to the same worker and that worker
  then crashes before re-processing them, its commit may have moved past them. The window is one
  rebalance plus one crash; plain crashes and restarts (tested with SIGKILL) lose nothing.
* **State.** ``snapshot()`` is stored after every batch/tick where it changed in a changelog-backed faust
  ``GlobalTable`` (``<app id>-orbitwatch_state-changelog``, 1 partition): each top-level key of the
  snapshot under ``<processor>@<instance>/<key>`` (only changed keys are re-written) and the key list
  under ``<processor>@<instance>``;
  on start, once table recovery completed, ``restore()`` gets it back before the first batch or tick.
* **Ticks.** ``app.timer(1.0)`` calls every processor's ``tick(now)`` (in the executor) and publishes its emits.
* **Metrics.** ``orbitwatch_worker_consumer_lag`` (per topic/partition: high-water mark − next offset to
  process), batch counts, retries, handle errors; the sink adds its own.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import Counter, Gauge

from orbitwatch.processors.base import Emit, Message, Processor, RetryableError
from orbitwatch.schemas.topics import topic_name

log = logging.getLogger("orbitwatch.worker")

LAG = Gauge("orbitwatch_worker_consumer_lag", "Messages behind the partition high-water mark",
            ["processor", "topic", "partition"])
BATCHES = Counter("orbitwatch_worker_batches_total", "Batches handled", ["processor"])
RETRIES = Counter("orbitwatch_worker_retries_total", "Batches re-delivered after a RetryableError", ["processor"])
HANDLE_ERRORS = Counter("orbitwatch_worker_handle_errors_total",
                        "Messages a processor failed on with an unexpected error (sent to the DLQ)", ["processor"])
EMITS = Counter("orbitwatch_worker_emits_total", "Records published by processors", ["processor", "topic"])

DLQ = "orbitwatch.dlq"
ERROR_HEADER = "orbitwatch-error"
STATE_TABLE = "orbitwatch_state"


def app_id(processors: list[Processor], prefix: str = "", group: str | None = None) -> str:
    # "-" joined: faust derives internal topic names from the id, and Kafka allows only [A-Za-z0-9._-]
    return prefix + (group or "orbitwatch-" + "-".join(p.name for p in processors))


class FaustRunner:
    """Builds the faust app for ``processors`` and holds the per-processor bookkeeping."""

    def __init__(self, processors: list[Processor], *, bootstrap: str, topic_prefix: str = "",
                 batch_size: int = 1000, batch_seconds: float = 1.0, group: str | None = None,
                 instance: str = "0", max_backoff: float = 30.0, tick_interval: float = 1.0,
                 datadir: str | None = None, session_timeout: float = 10.0, lag_interval: float = 5.0) -> None:
        import faust

        if not processors:
            raise ValueError("no processors to run")
        self.processors = processors
        self.prefix = topic_prefix
        self.batch_size = max(1, int(batch_size))
        self.batch_seconds = float(batch_seconds)
        self.instance = instance
        self.max_backoff = max_backoff
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orbitwatch-processor")
        self.id = app_id(processors, topic_prefix, group)
        self.bootstrap = bootstrap
        self._producer: Any = None
        self._stopping = False
        from aiokafka.partitioner import DefaultPartitioner
        self._partitioner = DefaultPartitioner()
        self._rr = 0
        self.app = faust.App(
            self.id,
            broker=[f"kafka://{b.strip()}" for b in bootstrap.split(",")],
            store="memory://",  # state lives in the changelog topic; rebuilt from it on start
            datadir=datadir,
            web_enabled=False,
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            topic_replication_factor=1,
            topic_allow_declare=True,
            stream_wait_empty=False,
            table_cleanup_interval=3600.0,
            # a SIGKILLed worker holds its partitions until its session expires: keep that short
            # (faust's default is 60 s; the broker's group.min.session.timeout.ms is 6 s)
            broker_session_timeout=session_timeout,
            broker_heartbeat_interval=min(3.0, session_timeout / 3),
        )
        self.state = self.app.GlobalTable(STATE_TABLE, key_type=str, value_type=str, partitions=1,
                                          recovery_buffer_size=1, use_partitioner=True, default=None)
        self._restored = asyncio.Event()
        self._snapshots: dict[str, dict[str, str]] = {}
        self._next_offset: dict[tuple[str, str, int], int] = {}
        for proc in processors:
            self._add_agent(proc)
        self.app.on_before_shutdown.connect(self._on_shutdown)
        self.app.timer(tick_interval)(self._tick)
        self.app.timer(lag_interval)(self._report_lag)

    # -- wiring ---------------------------------------------------------------------------------
    def _add_agent(self, proc: Processor) -> None:
        names = [topic_name(t, self.prefix) for t in proc.topics]
        channel = self.app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                                 value_serializer="raw")

        async def agent(stream: Any) -> None:
            # noack_take: faust never acks these events by itself (take/take_events would ack them in a
            # `finally`, i.e. also when the agent is cancelled mid-batch at shutdown); we ack each event
            # only once handle + publish succeeded, and faust commits only acked offsets.
            async for events in stream.noack_take(self.batch_size, within=self.batch_seconds):
                await self._restore_once()
                batch = [self._message(ev) for ev in events]
                await self._run_batch(proc, batch)  # returns only on success; raises CancelledError on stop
                for ev in events:
                    await stream.ack(ev)
                for m in batch:
                    self._next_offset[(proc.name, m.topic, m.partition)] = m.offset + 1

        agent.__name__ = f"agent_{proc.name}"
        agent.__qualname__ = agent.__name__
        self.app.agent(channel, name=f"orbitwatch.{proc.name}", concurrency=1)(agent)

    def _message(self, event: Any) -> Message:
        msg = event.message
        topic = msg.topic[len(self.prefix):] if self.prefix and msg.topic.startswith(self.prefix) else msg.topic
        headers: dict[str, bytes] = {}
        for k, v in (msg.headers.items() if isinstance(msg.headers, dict) else (msg.headers or ())):
            headers[k] = v if isinstance(v, bytes) else str(v).encode()
        return Message(topic=topic, value=msg.value if msg.value is not None else b"", key=msg.key,
                       headers=headers, partition=msg.partition, offset=msg.offset,
                       timestamp_ms=int((msg.timestamp or 0) * 1000))

    # -- the at-least-once loop -------------------------------------------------------------------
    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _run_batch(self, proc: Processor, batch: list[Message]) -> None:
        """handle + publish + snapshot, until it succeeded (see module docstring). Raises only
        CancelledError (shutdown), in which case the batch stays unacknowledged."""
        backoff = 0.5
        while True:
            self._check_running()
            try:
                emits = await self._call(proc.handle, batch)
            except RetryableError as exc:
                RETRIES.labels(proc.name).inc()
                log.warning("%s: %s; retrying the same batch of %d in %.1fs", proc.name, exc, len(batch), backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if len(batch) > 1:
                    log.error("%s: batch failed (%r); re-running it one message at a time", proc.name, exc)
                    for m in batch:
                        await self._run_batch(proc, [m])
                    return
                HANDLE_ERRORS.labels(proc.name).inc()
                m = batch[0]
                log.error("%s: message %s/%d/%d failed: %r; sent to the DLQ", proc.name, m.topic, m.partition,
                          m.offset, exc)
                reason = f"{proc.name} failed: {type(exc).__name__}: {exc}"[:1000]
                dlq = Emit(DLQ, m.value, f"{m.topic}/{m.partition}/{m.offset}".encode(),
                           {**m.headers, ERROR_HEADER: reason.encode()})
                await self._publish_retrying(proc, [dlq])
                break
            else:
                await self._publish_retrying(proc, emits)
                break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
        BATCHES.labels(proc.name).inc()
        await self._save_state(proc)

    def _check_running(self) -> None:
        if self._stopping:
            raise asyncio.CancelledError("runner is stopping; batch left unacknowledged for redelivery")

    async def _publish_retrying(self, proc: Processor, emits: list[Emit]) -> None:
        """Publish until delivered (Kafka down → back off); the batch is not re-handled for this."""
        backoff = 0.5
        while True:
            self._check_running()
            try:
                await self._publish(proc, emits)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._check_running()
                log.warning("%s: publish failed (%r); retrying in %.1fs", proc.name, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    async def _publish(self, proc: Processor, emits: list[Emit]) -> None:
        """Send every emit and wait until the broker acknowledged all of them (acks=all).

        Emits go through the runner's own idempotent aiokafka producer, grouped per partition into
        record batches (``create_batch``/``send_batch``; keys → partitions with Kafka's murmur2 default
        partitioner, the same as any Kafka client): a sink batch re-publishes tens of thousands of LLM
        spans, and one ``send`` per record would cost more than decoding them."""
        if not emits:
            return
        producer = await self._emit_producer()
        by_tp: dict[tuple[str, int], list[Emit]] = {}
        parts_of: dict[str, list[int]] = {}
        for e in emits:
            topic = self.prefix + e.topic
            parts = parts_of.get(topic)
            if parts is None:
                await producer.client._wait_on_metadata(topic)
                parts = parts_of[topic] = sorted(producer.client.cluster.partitions_for_topic(topic) or ())
                if not parts:
                    raise RuntimeError(f"topic {topic} has no partitions")
            part = self._partitioner(e.key, parts, parts) if e.key is not None else parts[
                self._rr % len(parts)]
            if e.key is None:
                self._rr += 1
            by_tp.setdefault((topic, part), []).append(e)
            EMITS.labels(proc.name, e.topic).inc()
        futures = []
        for (topic, part), items in by_tp.items():
            batch = producer.create_batch()
            for e in items:
                headers = list(e.headers.items())
                if batch.append(key=e.key, value=e.value, timestamp=None, headers=headers) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=part))
                    batch = producer.create_batch()
                    if batch.append(key=e.key, value=e.value, timestamp=None, headers=headers) is None:
                        # bigger than a whole batch: the plain path splits/rejects it with a clear error
                        futures.append(await producer.send(topic, e.value, key=e.key, partition=part,
                                                           headers=headers or None))
                        batch = producer.create_batch()
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=part))
        await asyncio.gather(*futures)

    async def _emit_producer(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                        linger_ms=5, compression_type="lz4", max_batch_size=512 * 1024,
                                        max_request_size=8 * 1024 * 1024, client_id=f"{self.id}-emits")
            await producer.start()
            self._producer = producer
        return self._producer

    # -- state ----------------------------------------------------------------------------------
    def _state_key(self, proc: Processor) -> str:
        return f"{proc.name}@{self.instance}"

    async def _restore_once(self) -> None:
        if self._restored.is_set():
            return
        for proc in self.processors:
            base = self._state_key(proc)
            index = self.state.get(base)
            if not index:
                continue
            try:
                keys = json.loads(index)
                state = {k: json.loads(self.state[f"{base}/{k}"]) for k in keys
                         if self.state.get(f"{base}/{k}")}
                proc.restore(state)
                self._snapshots[proc.name] = {k: self.state[f"{base}/{k}"] for k in state}
                log.info("%s: state restored (%d keys)", proc.name, len(state))
            except Exception as exc:  # a bad snapshot must not stop the stream; start empty, say so
                log.error("%s: could not restore state (%r); starting empty", proc.name, exc)
        self._restored.set()

    async def _save_state(self, proc: Processor) -> None:
        """Persist each top-level key of the snapshot as its own table entry (plus an index entry
        listing the keys): a processor's whole state (drift: many features x window slots) can
        exceed Kafka's 1 MB message limit, one key of it stays small, and only changed keys are
        re-written to the changelog."""
        snap = await self._call(proc.snapshot) or {}
        raw = {str(k): json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
               for k, v in snap.items()}
        before = self._snapshots.get(proc.name, {})
        if raw == before:
            return
        base = self._state_key(proc)
        for k, v in raw.items():
            if before.get(k) != v:
                self.state[f"{base}/{k}"] = v
        for k in before.keys() - raw.keys():
            if f"{base}/{k}" in self.state:
                del self.state[f"{base}/{k}"]  # a tombstone in the changelog
        if raw.keys() != before.keys():
            self.state[base] = json.dumps(sorted(raw))
        self._snapshots[proc.name] = raw

    # -- timers ---------------------------------------------------------------------------------
    async def _tick(self) -> None:
        if not self._recovered():
            return
        await self._restore_once()
        now = time.time()
        for proc in self.processors:
            try:
                emits = await self._call(proc.tick, now)
            except RetryableError as exc:
                log.warning("%s: tick: %s (next tick retries)", proc.name, exc)
                continue
            except Exception:
                log.exception("%s: tick failed", proc.name)
                continue
            await self._publish_retrying(proc, emits)
            await self._save_state(proc)

    def _recovered(self) -> bool:
        recovery = getattr(self.app.tables, "recovery", None)
        completed = getattr(recovery, "completed", None)
        return bool(completed is None or completed.is_set())

    async def _report_lag(self) -> None:
        consumer = getattr(self.app, "_consumer", None)
        if consumer is None:
            return
        try:
            assigned = consumer.assignment()
        except Exception:
            return
        for tp in assigned:
            topic = tp.topic[len(self.prefix):] if self.prefix and tp.topic.startswith(self.prefix) else tp.topic
            for proc in self.processors:
                if topic not in proc.topics:
                    continue
                hw = consumer.highwater(tp)
                if hw is None:
                    continue
                nxt = self._next_offset.get((proc.name, topic, tp.partition))
                if nxt is None:
                    committed = getattr(consumer, "_committed_offset", {}).get(tp)
                    nxt = committed if committed is not None else hw
                LAG.labels(proc.name, topic, str(tp.partition)).set(max(0, hw - nxt))

    # -- running ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start inside an already running event loop (tests, benches, embedding); pair with :meth:`stop`."""
        self.app.conf.datadir.mkdir(parents=True, exist_ok=True)
        await self.app.start()

    async def stop(self) -> None:
        self._stopping = True
        await self.app.stop()
        await self._stop_producer()
        self.executor.shutdown(wait=True)

    async def _on_shutdown(self, app: Any = None, **_: Any) -> None:
        self._stopping = True
        await self._stop_producer()

    async def _stop_producer(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    def run(self, loglevel: str = "warning") -> None:
        """Run until SIGTERM/SIGINT (blocking). Uses faust's Worker (signal handling, clean shutdown)."""
        import faust
        self.app.conf.datadir.mkdir(parents=True, exist_ok=True)  # faust itself does not create parents
        worker = faust.Worker(self.app, loglevel=loglevel, quiet=True)
        try:
            worker.execute_from_commandline()
        finally:
            self.executor.shutdown(wait=False)


def build_app(processors: list[Processor], settings: Any, **options: Any) -> FaustRunner:
    """The runner for ``processors`` with Kafka/topic prefix from ``settings`` (see FaustRunner for options)."""
    return FaustRunner(processors, bootstrap=settings.kafka_bootstrap, topic_prefix=settings.topic_prefix,
                       **options)
