"""``orbitwatch worker``: the stream processors (sink, drift, evals, alerts) over Kafka with faust.

Runs migrations, creates missing topics, then the faust app of
:mod:`orbitwatch.processors.runners.faust_app` until SIGTERM/SIGINT. Scale out by starting more
workers with the same ``--only`` set: Kafka partitions are the parallelism.
"""
from __future__ import annotations

import argparse

HELP = "run the stream processors (sink, drift, evals, alerts) over Kafka with faust-streaming"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.cli import add_common
    add_common(p, "data_dir", "clickhouse_url", "kafka_bootstrap", "project", "alert_webhook", "alert_rules")
    p.add_argument("--only", default=None,
                   help="comma list of processors to run (default: all available: sink,drift,evals,alerts)")
    p.add_argument("--batch-size", type=int, default=1000,
                   help="max Kafka messages per batch (each OTLP message holds many spans; default 1000)")
    p.add_argument("--batch-seconds", type=float, default=1.0, help="max wait to fill a batch (default 1.0)")
    p.add_argument("--max-rows", type=int, default=None,
                   help="rows per ClickHouse insert in the sink (ORBITWATCH_SINK_MAX_ROWS, default 25000)")
    p.add_argument("--group", default=None,
                   help="consumer group / faust app id (default orbitwatch-<processors>, after the topic prefix)")
    p.add_argument("--instance", default="0", help="name of this worker's state snapshot (stable across restarts)")
    p.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics on this port (0: off)")
    p.add_argument("--no-migrate", action="store_true", help="do not run ClickHouse migrations first")
    p.add_argument("--no-create-topics", action="store_true", help="do not create missing Kafka topics")
    p.add_argument("--ttl-days", type=int, default=30, help="retention used by migrations (days)")
    p.add_argument("--loglevel", default="warning", help="faust/worker log level (default warning)")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os
    import sys

    from orbitwatch.cli import settings_from
    from orbitwatch.errors import UserError
    from orbitwatch.processors.registry import UnknownProcessorError, build_processors
    from orbitwatch.processors.runners.faust_app import build_app
    from orbitwatch.storage import Storage, migrate
    from orbitwatch.storage.clickhouse import redact

    settings = settings_from(args)
    logging.basicConfig(level=getattr(logging, args.loglevel.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.max_rows:
        os.environ["ORBITWATCH_SINK_MAX_ROWS"] = str(args.max_rows)
    only = {s.strip() for s in args.only.split(",") if s.strip()} if args.only else None
    import re
    if args.group is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", args.group):
        raise UserError(f"invalid --group {args.group!r}: use letters, digits, '.', '_' and '-' (it names Kafka topics)")
    storage = Storage(settings.clickhouse_url)
    if not args.no_migrate:
        migrate(storage, ttl_days=args.ttl_days)
    if not args.no_create_topics:
        from orbitwatch.ingest.kafka_admin import create_topics
        try:
            asyncio.run(create_topics(settings.kafka_bootstrap, prefix=settings.topic_prefix))
        except Exception as exc:
            raise UserError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    try:
        processors = build_processors(settings, storage, only)
    except UnknownProcessorError as exc:
        raise UserError(str(exc)) from None
    if not processors:
        raise UserError("no processors available to run")
    if args.metrics_port:
        from prometheus_client import start_http_server
        start_http_server(args.metrics_port)
    faust_dir = settings.data_dir / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)
    runner = build_app(processors, settings, batch_size=args.batch_size, batch_seconds=args.batch_seconds,
                       group=args.group, instance=args.instance,
                       datadir=str(faust_dir))
    print(f"orbitwatch worker: {', '.join(p.name for p in processors)} | group {runner.id} | "
          f"kafka {settings.kafka_bootstrap} | clickhouse {redact(settings.clickhouse_url)}", file=sys.stderr,
          flush=True)
    try:
        runner.run(loglevel=args.loglevel)
    finally:
        storage.close()
    return 0
