"""Create the topic catalogue on a Kafka cluster (idempotent)."""
from __future__ import annotations

from orbitwatch.schemas.topics import CATALOGUE, Topic, topic_name


async def create_topics(bootstrap: str, topics: tuple[Topic, ...] = CATALOGUE,
                        replication_factor: int = 1, partitions: int | None = None,
                        prefix: str = "") -> list[str]:
    """Create missing topics; returns the names created now. ``partitions`` overrides the catalogue."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(topic_name(t, prefix), partitions or t.partitions, replication_factor,
                        topic_configs=t.config())
               for t in topics if topic_name(t, prefix) not in existing]
        if new:
            await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()
