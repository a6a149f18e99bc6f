"""Foundation: a real Kafka broker from the fixture; topic catalogue applied by the CLI."""
from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from orbitwatch.schemas.topics import CATALOGUE, topic_name


def test_produce_and_consume_through_real_broker(kafka, unique):
    topic = f"t{unique}.roundtrip"

    async def go():
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            futs = [await producer.send(topic, f"v{i}".encode(), key=f"k{i % 3}".encode(),
                                        headers=[("orbitwatch-tenant", b"acme")]) for i in range(100)]
            await asyncio.gather(*futs)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, group_id=f"g{unique}",
                                    auto_offset_reset="earliest")
        await consumer.start()
        got = []
        try:
            while len(got) < 100:
                batch = await consumer.getmany(timeout_ms=5000)
                assert batch, "no records within 5 s"
                for msgs in batch.values():
                    got.extend(msgs)
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(go())
    assert sorted(m.value for m in got) == sorted(f"v{i}".encode() for i in range(100))
    assert all(dict(m.headers)["orbitwatch-tenant"] == b"acme" for m in got)
    # same key -> same partition
    by_key = {}
    for m in got:
        by_key.setdefault(m.key, set()).add(m.partition)
    assert all(len(p) == 1 for p in by_key.values())


def test_topics_create_is_idempotent(kafka, unique, orbitwatch_cli):
    env = {"ORBITWATCH_KAFKA_BOOTSTRAP": kafka.bootstrap, "ORBITWATCH_TOPIC_PREFIX": f"t{unique}."}
    first = orbitwatch_cli("topics", "create", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created ") == len(CATALOGUE)
    second = orbitwatch_cli("topics", "create", env=env)
    assert second.returncode == 0 and "created " not in second.stdout

    async def describe():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            return await admin.describe_topics([topic_name(t, f"t{unique}.") for t in CATALOGUE])
        finally:
            await admin.close()

    described = {d["topic"]: d for d in asyncio.run(describe())}
    for t in CATALOGUE:
        assert len(described[topic_name(t, f"t{unique}.")]["partitions"]) == t.partitions
