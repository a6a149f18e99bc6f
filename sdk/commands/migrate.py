from __future__ import annotations

import argparse

HELP = "apply ClickHouse migrations (idempotent) and print what was applied"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.cli import add_common
    add_common(p, "data_dir", "clickhouse_url")
    p.add_argument("--cluster", default="", help="ClickHouse cluster name: ON CLUSTER DDL and Replicated engines")
    p.add_argument("--ttl-days", type=int, default=30, help="retention of spans, metrics and logs (days)")


def run(args: argparse.Namespace) -> int:
    from orbitwatch.cli import settings_from
    from orbitwatch.storage import Storage, migrate
    from orbitwatch.storage.clickhouse import redact

    settings = settings_from(args)
    storage = Storage(settings.clickhouse_url)
    done = migrate(storage, cluster=args.cluster, ttl_days=args.ttl_days)
    for m in done:
        print(f"applied {m.version:04d}_{m.name}")
    print(f"schema up to date ({len(done)} applied now) at {redact(settings.clickhouse_url)}")
    storage.close()
    return 0
