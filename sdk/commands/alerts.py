"""``orbitwatch alerts``: current alerts (or their full history)."""
from __future__ import annotations

import argparse

HELP = "alerts: current state per alert, or every transition with --history"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.commands._views import add_source_args
    p.add_argument("--status", choices=("firing", "resolved"))
    p.add_argument("--rule")
    p.add_argument("--since", help="ISO time or relative: 15m, 2h, 7d")
    p.add_argument("--history", action="store_true", help="every firing/resolved transition")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    add_source_args(p)


def run(args: argparse.Namespace) -> int:
    from orbitwatch.commands import _views as v

    src = v.Source.from_args(args)
    try:
        page = src.call("list_alerts", status=args.status, rule=args.rule, since=args.since, history=args.history,
                        limit=args.limit, offset=args.offset)
        if args.json:
            v.print_json(page)
        else:
            con = v.console()
            if not page["items"]:
                con.print("no alerts")
            else:
                con.print(v.alerts_table(page))
    finally:
        src.close()
    return 0
