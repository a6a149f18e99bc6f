"""``orbitwatch datasets ls|show|push|rm``: versioned evaluation datasets."""
from __future__ import annotations

import argparse

HELP = "list, show, push (JSONL) or remove items of versioned evaluation datasets"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.commands._views import add_source_args
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("ls", help="datasets with their latest version")
    ls.add_argument("--project")
    add_source_args(ls)
    show = sub.add_parser("show", help="items of a dataset version (default: latest) and its history")
    show.add_argument("name")
    show.add_argument("--project")
    show.add_argument("--version", type=int)
    add_source_args(show)
    push = sub.add_parser("push", help="add items from a JSONL file (one {input, expected_output?, context?, "
                                       "metadata?} per line) as a new version; existing items are skipped")
    push.add_argument("name")
    push.add_argument("file", type=argparse.FileType("r"))
    push.add_argument("--project")
    push.add_argument("--description", default="")
    add_source_args(push)
    rm = sub.add_parser("rm", help="remove items by id (a new version; older versions keep them)")
    rm.add_argument("name")
    rm.add_argument("item_ids", nargs="+")
    rm.add_argument("--project")
    add_source_args(rm)


def backend(args: argparse.Namespace):
    """The evaluation backend of ``orbitwatch.evaluation``: ClickHouse with --clickhouse, else the API."""
    from orbitwatch.cli import settings_from
    from orbitwatch.evaluation import _HttpBackend, _StorageBackend
    settings = settings_from(args)
    if args.clickhouse_url:
        from orbitwatch.storage import Storage
        return _StorageBackend(Storage(args.clickhouse_url)), settings
    return _HttpBackend(settings.api_url, settings.api_key), settings


def run(args: argparse.Namespace) -> int:
    import json

    from orbitwatch.commands import _views as v
    from orbitwatch.errors import UserError

    b, settings = backend(args)
    project = args.project or settings.project
    if args.action == "ls":
        out = b.list_datasets(args.project)
        if args.json:
            v.print_json(out)
            return 0
        from rich.table import Table
        t = Table(title="datasets", title_justify="left")
        for c in ("project", "name", "version", "items", "updated"):
            t.add_column(c)
        for d in out:
            t.add_row(d["project"], d["name"], str(d["version"]), str(d["item_count"]), str(d["updated_at"])[:19])
        v.console().print(t)
    elif args.action == "show":
        version, items = b.items(project, args.name, args.version)
        versions = b.versions(project, args.name)
        if args.json:
            v.print_json({"name": args.name, "version": version, "versions": versions, "items": items})
            return 0
        from rich.table import Table
        con = v.console()
        t = Table(title=f"{project}/{args.name} v{version}: {len(items)} items", title_justify="left")
        for c in ("id", "input", "expected_output", "context"):
            t.add_column(c, overflow="fold")
        for it in items:
            t.add_row(it["id"], v._short(json.dumps(it["input"], default=str)),
                      v._short(json.dumps(it["expected_output"], default=str)), str(len(it["context"])) + " docs")
        con.print(t)
        con.print("versions: " + ", ".join(f"v{x['version']} ({x['change']}: +{x['added']} -{x['deleted']})"
                                           for x in versions))
    elif args.action == "push":
        items = []
        for n, line in enumerate(args.file, 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except ValueError as exc:
                raise UserError(f"{args.file.name}:{n}: not JSON: {exc}") from None
        if not items:
            raise UserError(f"{args.file.name}: no items")
        b.create(project, args.name, args.description)
        out = b.add_items(project, args.name, items)
        if args.json:
            v.print_json(out)
        else:
            print(f"{project}/{args.name}: version {out['version']}, {out['item_count']} items")
    else:
        out = b.delete_items(project, args.name, args.item_ids)
        if args.json:
            v.print_json(out)
        else:
            print(f"{project}/{args.name}: version {out['version']}, {out['item_count']} items")
    return 0
