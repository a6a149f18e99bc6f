from __future__ import annotations

import argparse

HELP = "create the Kafka topics of the catalogue (idempotent): orbitwatch topics create --kafka HOST:PORT"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.cli import add_common
    p.add_argument("action", choices=("create", "list"))
    add_common(p, "kafka_bootstrap")
    p.add_argument("--replication-factor", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from orbitwatch.cli import settings_from
    from orbitwatch.schemas.topics import CATALOGUE

    settings = settings_from(args)
    if args.action == "list":
        for t in CATALOGUE:
            print(f"{t.name}\tpartitions={t.partitions}\tkey={t.key}\tretention_ms={t.retention_ms}"
                  f"\tcompacted={t.compacted}")
        return 0
    from orbitwatch.ingest.kafka_admin import create_topics
    created = asyncio.run(create_topics(settings.kafka_bootstrap, replication_factor=args.replication_factor,
                                          prefix=settings.topic_prefix))
    for name in created:
        print(f"created {name}")
    print(f"{len(CATALOGUE)} topics present on {settings.kafka_bootstrap}")
    return 0
