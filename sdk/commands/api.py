"""``orbitwatch api``: the query API alone, against a ClickHouse server (distributed mode) or a chdb
data dir that no other process holds."""
from __future__ import annotations

import argparse
import sys

HELP = "serve the query API (traces, experiments, drift, scores, alerts, SQL) over ClickHouse"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.cli import add_common
    add_common(p, "data_dir", "clickhouse_url")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--no-auth", action="store_true", help="answer queries without API keys")
    auth.add_argument("--keys", metavar="FILE", help="API keys file (the gateway's format); also "
                                                    "ORBITWATCH_API_KEYS_FILE / ORBITWATCH_API_KEYS")
    p.add_argument("--migrate", action="store_true", help="apply pending migrations first")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from orbitwatch.api.app import create_app, make_server
    from orbitwatch.cli import settings_from
    from orbitwatch.commands.up import _auth
    from orbitwatch.storage import Storage, migrate
    from orbitwatch.storage.clickhouse import redact

    settings = settings_from(args)
    auth, note = _auth(args)
    storage = Storage(settings.clickhouse_url)
    if args.migrate:
        migrate(storage)
    print(f"orbitwatch api: http://{args.host}:{args.port}/api/v1 (OpenAPI: /docs) over "
          f"{redact(settings.clickhouse_url)}; auth {note}", file=sys.stderr, flush=True)
    server = make_server(create_app(storage, auth, settings=settings), args.host, args.port)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        await server.serve()

    try:
        asyncio.run(serve())
    finally:
        storage.close()
    return 0
