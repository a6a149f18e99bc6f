"""End to end through a real Kafka broker and chdb: prediction envelopes on a prefixed
``orbitwatch.predictions`` topic -> drift operator (driven by a small aiokafka loop, restarted
half-way from its snapshot) -> ``drift_results`` rows and envelopes on ``orbitwatch.drift``."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from orbitwatch.ingest.kafka_admin import create_topics
from orbitwatch.processors.base import Message
from orbitwatch.processors.drift import DriftProcessor, load_config
from orbitwatch.processors.drift import synthetic as syn
from orbitwatch.schemas import envelope
from orbitwatch.schemas.topics import DRIFT, PREDICTIONS, topic_name

pytestmark = pytest.mark.kafka
T0 = 1_700_000_000.0 - (1_700_000_000.0 % 3600)
FEATURES = ["a", "b", "c"]


async def drive(proc: DriftProcessor, bootstrap: str, prefix: str, group: str, stop_after: int) -> int:
    """Consume until ``stop_after`` messages were handled; publish emits; commit after each batch."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    consumer = AIOKafkaConsumer(topic_name(PREDICTIONS, prefix), bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=300)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    handled = 0
    try:
        while handled < stop_after:
            polled = await consumer.getmany(timeout_ms=2000, max_records=min(300, stop_after - handled))
            if not polled:
                raise AssertionError(f"no more messages after {handled}")
            batch = [Message(topic=PREDICTIONS.name, value=m.value, key=m.key, partition=m.partition,
                             offset=m.offset) for msgs in polled.values() for m in msgs]
            loop = asyncio.get_running_loop()
            emits = await loop.run_in_executor(None, proc.handle, batch)
            emits += await loop.run_in_executor(None, proc.tick, 1e9 + handled)
            for e in emits:
                await producer.send(topic_name(e.topic, prefix), e.value, key=e.key)
            await producer.flush()
            await consumer.commit()
            handled += len(batch)
    finally:
        await producer.stop()
        await consumer.stop()
    return handled


async def read_topic(bootstrap: str, topic: str) -> list:
    from aiokafka import AIOKafkaConsumer
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    out = []
    try:
        while True:
            polled = await c.getmany(timeout_ms=1500)
            if not polled:
                return out
            out += [envelope.decode(m.value) for msgs in polled.values() for m in msgs]
    finally:
        await c.stop()


async def test_predictions_through_kafka_flag_the_shifted_feature_across_a_restart(kafka, storage, unique) -> None:
    from aiokafka import AIOKafkaProducer

    prefix = f"t{unique}."
    await create_topics(kafka.bootstrap, (PREDICTIONS, DRIFT), partitions=1, prefix=prefix)
    rng = np.random.default_rng(3)
    recs = syn.references(rng, FEATURES, 4000, chunk=1500) + syn.predictions(
        rng, FEATURES, 3000, T0, rate=1.0, shift={"b": 0.5}, shift_from=T0 + 1800, labels=True)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for m in syn.messages(recs):
            await producer.send(topic_name(PREDICTIONS, prefix), m.value, key=m.key)
        await producer.flush()
    finally:
        await producer.stop()

    cfg = dict(window_seconds=600, allowed_lateness_seconds=10, emit_interval_seconds=30)
    group = f"drift-{unique}"
    first = DriftProcessor(load_config(**cfg), storage)
    half = len(recs) // 2 + 137  # stop in the middle of a window
    assert await drive(first, kafka.bootstrap, prefix, group, half) == half
    state = json.loads(json.dumps(first.snapshot()))  # what the runner persists

    # "restart": a new operator restored from the snapshot continues from the committed offsets
    second = DriftProcessor(load_config(**cfg), storage)
    second.restore(state)
    assert await drive(second, kafka.bootstrap, prefix, group, len(recs) - half) == len(recs) - half

    rows = storage.query_dicts(
        "SELECT feature, drifted, sample_size, toUnixTimestamp(window_start) - {t:Int64} AS w "
        "FROM drift_results FINAL WHERE project = 'p' AND is_primary AND is_final AND feature IN ('a', 'b', 'c') "
        "ORDER BY w, feature", {"t": int(T0)})
    assert {r["w"] for r in rows} == {0, 600, 1200, 1800}  # [2400, 3000) is still open
    # no reset visible: every closed window holds all of its 600 events, also the one spanning the restart
    assert {r["sample_size"] for r in rows} == {600}
    assert {(r["w"], r["feature"]) for r in rows if r["drifted"]} == {(1800, "b")}

    topic = await read_topic(kafka.bootstrap, topic_name(DRIFT, prefix))
    finals = [x for x in topic if x.is_final and getattr(x, "is_primary", False) and x.feature == "b"]
    assert [x.drifted for x in sorted(finals, key=lambda x: x.window_start)] == [False, False, False, True]
    assert any(not x.is_final for x in topic)  # provisional results were published too


async def _committed_all(bootstrap: str, group: str, topic: str, timeout: float = 60.0) -> None:
    """Wait until ``group`` committed every message of ``topic``."""
    import time

    from aiokafka import AIOKafkaConsumer, TopicPartition
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        await c._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in (c.partitions_for_topic(topic) or ())]
        ends = await c.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while True:
            got = {tp: (await c.committed(tp)) or 0 for tp in tps}
            if got == ends:
                return
            assert time.monotonic() < deadline, f"committed {got}, end offsets {ends}"
            await asyncio.sleep(0.3)
    finally:
        await c.stop()


async def test_faust_worker_restart_keeps_the_window_state(kafka, storage, unique, tmp_path) -> None:
    """The real faust runner drives the operator; it is stopped mid-window and a new one restores the
    state from the changelog-backed table: the window spanning the restart holds all its events."""
    from aiokafka import AIOKafkaProducer

    from orbitwatch.processors.runners.faust_app import FaustRunner

    prefix = f"t{unique}."
    await create_topics(kafka.bootstrap, prefix=prefix, partitions=1)
    rng = np.random.default_rng(4)
    recs = syn.references(rng, FEATURES, 3000) + syn.predictions(
        rng, FEATURES, 2400, T0, rate=1.0, shift={"c": 0.5}, shift_from=T0 + 1200)
    msgs = syn.messages(recs)
    half = 3 + 900 + 150  # the references, then into the middle of the second window
    cfg = dict(window_seconds=600, allowed_lateness_seconds=10, emit_interval_seconds=1)

    def runner() -> FaustRunner:
        return FaustRunner([DriftProcessor(load_config(**cfg), storage)], bootstrap=kafka.bootstrap,
                           topic_prefix=prefix, batch_size=200, batch_seconds=0.1, instance=unique,
                           datadir=str(tmp_path / "faust"), max_backoff=0.5)

    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    topic = topic_name(PREDICTIONS, prefix)
    try:
        for part in (msgs[:half], msgs[half:]):
            for m in part:
                await producer.send(topic, m.value, key=m.key)
            await producer.flush()
            run = runner()
            await run.start()
            try:
                await _committed_all(kafka.bootstrap, run.id, topic)
                await asyncio.sleep(1.5)  # let the state write of the last batch reach the changelog
            finally:
                await run.stop()
    finally:
        await producer.stop()

    rows = storage.query_dicts(
        "SELECT feature, drifted, sample_size, toUnixTimestamp(window_start) - {t:Int64} AS w "
        "FROM drift_results FINAL WHERE project = 'p' AND is_primary AND is_final AND feature IN ('a', 'b', 'c') "
        "ORDER BY w, feature", {"t": int(T0)})
    assert {r["w"] for r in rows} == {0, 600, 1200}  # [1800, 2400) is still open
    assert {r["sample_size"] for r in rows} == {600}  # no reset: [600, 1200) spans the restart
    assert {(r["w"], r["feature"]) for r in rows if r["drifted"]} == {(1200, "c")}
