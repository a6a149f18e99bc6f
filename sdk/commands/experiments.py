"""``orbitwatch experiments ls|show|compare``: experiment tracking views."""
from __future__ import annotations

import argparse

HELP = "list, show (params + metric curves) or compare experiments"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.commands._views import add_source_args
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("ls", help="list experiments, newest first")
    ls.add_argument("--project")
    ls.add_argument("--search", help="name substring or id prefix")
    ls.add_argument("--status", choices=("running", "finished", "failed"))
    ls.add_argument("--tag")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--offset", type=int, default=0)
    add_source_args(ls)
    show = sub.add_parser("show", help="parameters, metric summaries and curves of one experiment")
    show.add_argument("experiment_id", help="id or unique prefix (≥ 6 characters)")
    show.add_argument("--metric", action="append", help="print every point of this metric (repeatable)")
    show.add_argument("--x", choices=("step", "epoch", "time"), default="step")
    add_source_args(show)
    cmp = sub.add_parser("compare", help="compare experiments side by side")
    cmp.add_argument("experiment_ids", nargs="+")
    add_source_args(cmp)


def run(args: argparse.Namespace) -> int:
    from orbitwatch.commands import _views as v

    src = v.Source.from_args(args)
    try:
        if args.action == "ls":
            page = src.call("list_experiments", project=args.project, search=args.search, status=args.status,
                            tag=args.tag, limit=args.limit, offset=args.offset)
            if args.json:
                v.print_json(page)
            else:
                v.console().print(v.experiments_table(page))
        elif args.action == "show":
            exp = src.call("get_experiment", experiment_id=args.experiment_id)
            hist = src.call("metric_history", experiment_id=exp["experiment_id"], name=args.metric, x=args.x,
                            limit=1000)
            if args.json:
                v.print_json({**exp, "history": hist})
                return 0
            con = v.console()
            con.print(v.experiment_view(exp, hist))
            if args.metric:
                from rich.table import Table
                t = Table(title=f"points by {args.x}", title_justify="left")
                for c in ("metric", "step", "epoch", "value", "time"):
                    t.add_column(c)
                for name, pts in hist["series"].items():
                    for pt in pts:
                        t.add_row(name, str(pt["step"]), str(pt["epoch"]), f"{pt['value']:.6g}", pt["timestamp"])
                con.print(t)
        else:
            if len(args.experiment_ids) < 2:
                from orbitwatch.errors import UserError
                raise UserError("compare needs at least two experiment ids")
            cmp = src.call("compare_experiments", ids=args.experiment_ids)
            if args.json:
                v.print_json(cmp)
            else:
                v.console().print(v.compare_view(cmp))
    finally:
        src.close()
    return 0
