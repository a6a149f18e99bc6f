"""``orbitwatch traces ls|show``: LLM traces from the running instance (or ClickHouse with --clickhouse)."""
from __future__ import annotations

import argparse

HELP = "list traces or show one as a tree (durations, tokens, cost, eval scores)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.commands._views import add_source_args
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("ls", help="list traces, newest first")
    ls.add_argument("--project")
    ls.add_argument("--since", default="24h",
                    help="ISO time or relative: 15m, 2h, 7d (default 24h; 'all' for no bound, slower on big tables)")
    ls.add_argument("--until")
    ls.add_argument("--type", dest="span_type", help="only traces with a span of this type (llm, retriever, ...)")
    ls.add_argument("--model")
    ls.add_argument("--status", choices=("ok", "error"))
    ls.add_argument("--min-latency-ms", type=float)
    ls.add_argument("--has-score", help="'true' or a score name, e.g. hallucination")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--offset", type=int, default=0)
    add_source_args(ls)
    show = sub.add_parser("show", help="one trace as a tree")
    show.add_argument("trace_id")
    show.add_argument("--no-io", action="store_true", help="hide span inputs/outputs")
    add_source_args(show)


def run(args: argparse.Namespace) -> int:
    from orbitwatch.commands import _views as v

    src = v.Source.from_args(args)
    try:
        if args.action == "ls":
            page = src.call("list_traces", project=args.project, since=args.since, until=args.until,
                            span_type=args.span_type, model=args.model, status=args.status,
                            min_latency_ms=args.min_latency_ms, has_score=args.has_score, limit=args.limit,
                            offset=args.offset)
            if args.json:
                v.print_json(page)
            else:
                con = v.console()
                con.print(v.traces_table(page))
                if page.get("next_offset") is not None:
                    con.print(f"more: --offset {page['next_offset']}", style="dim")
        else:
            trace = src.call("get_trace", trace_id=args.trace_id)
            if args.json:
                v.print_json(trace)
            else:
                v.console().print(v.trace_tree(trace, show_io=not args.no_io))
    finally:
        src.close()
    return 0
