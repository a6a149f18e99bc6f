from __future__ import annotations

import argparse
import csv
import json
import sys

HELP = "run a read-only SQL query and print the result (table, json or csv)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.cli import add_common
    add_common(p, "data_dir", "clickhouse_url", "api_url", "api_key")
    p.add_argument("query", help="a SELECT / SHOW / DESCRIBE / EXPLAIN statement")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--max-rows", type=int, default=10_000)


def run(args: argparse.Namespace) -> int:
    """Straight to ClickHouse when --clickhouse is given (or no instance answers at --url)."""
    from orbitwatch.cli import settings_from

    settings = settings_from(args)
    cols_rows = None
    if args.clickhouse_url is None:
        cols_rows = _via_api(settings, args)
    if cols_rows is None:
        from orbitwatch.storage import Storage
        storage = Storage(settings.clickhouse_url)
        try:
            cols_rows = storage.query_read_only(args.query, max_rows=args.max_rows)
        finally:
            storage.close()
    print_result(*cols_rows, fmt=args.format)
    return 0


def _via_api(settings, args):
    """Ask a running `orbitwatch up` / `orbitwatch api` (it owns the embedded data dir); None when
    nothing answers, so the caller goes to ClickHouse directly."""
    from orbitwatch.commands._views import ApiUnreachable, api_request

    try:
        body = api_request(settings.api_url, "/api/v1/sql", settings.api_key,
                           body={"query": args.query, "max_rows": args.max_rows})
    except ApiUnreachable:
        return None
    return body["columns"], [tuple(r) for r in body["rows"]]


def print_result(columns: list[str], rows: list[tuple], fmt: str = "table") -> None:
    if fmt == "json":
        json.dump([dict(zip(columns, r)) for r in rows], sys.stdout, default=str, indent=None)
        sys.stdout.write("\n")
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows(rows)
    else:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            print("\t".join(columns))
            for r in rows:
                print("\t".join(str(v) for v in r))
            return
        t = Table(*columns)
        for r in rows:
            t.add_row(*(str(v) for v in r))
        Console().print(t)
        Console(stderr=True).print(f"{len(rows)} row(s)")
