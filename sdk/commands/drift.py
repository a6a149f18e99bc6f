"""``orbitwatch drift [MODEL]``: drift per feature of a monitored model (or the list of models)."""
from __future__ import annotations

import argparse

HELP = "drift of a monitored model per feature and metric (no MODEL: list monitored models)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.commands._views import add_source_args
    p.add_argument("model", nargs="?")
    p.add_argument("--project")
    p.add_argument("--version")
    p.add_argument("--feature")
    p.add_argument("--since", help="ISO time or relative: 15m, 2h, 7d")
    p.add_argument("--final-only", action="store_true", help="only closed windows")
    p.add_argument("--windows", action="store_true", help="also print every window")
    p.add_argument("--all-metrics", action="store_true",
                   help="show every metric, not only each feature's deciding test")
    add_source_args(p)


def run(args: argparse.Namespace) -> int:
    from orbitwatch.commands import _views as v

    src = v.Source.from_args(args)
    try:
        if not args.model:
            models = src.call("drift_models", project=args.project)
            if args.json:
                v.print_json(models)
                return 0
            from rich.table import Table
            t = Table(title="monitored models", title_justify="left")
            for c in ("project", "model", "version", "results", "features", "drifted features", "last window end"):
                t.add_column(c)
            for m in models["items"]:
                t.add_row(m["project"], m["model"], m["model_version"], str(m["results"]), str(m["features"]),
                          str(m["drifted_features"]), m["last_window_end"])
            v.console().print(t)
            return 0
        tl = src.call("drift_timeline", model=args.model, project=args.project, version=args.version,
                      feature=args.feature, since=args.since, final_only=args.final_only, limit=1000)
        if args.json:
            v.print_json(tl)
            return 0
        con = v.console()
        if not tl["items"]:
            con.print(f"no drift results for model {args.model!r} yet")
            return 0
        con.print(v.drift_view(tl, args.model, primary_only=not args.all_metrics))
        con.print("drifted features: " + (", ".join(tl["drifted_features"]) or "none"),
                  style="bold red" if tl["drifted_features"] else "green")
        if args.windows:
            from rich.table import Table
            t = Table(title="windows", title_justify="left")
            for c in ("window start", "window end", "feature", "metric", "value", "drifted", "final", "n"):
                t.add_column(c)
            for r in tl["items"]:
                t.add_row(r["window_start"][:19], r["window_end"][:19], r["feature"], r["metric"],
                          f"{r['value']:.4g}", "yes" if r["drifted"] else "", "yes" if r["is_final"] else "",
                          str(r["sample_size"]))
            con.print(t)
    finally:
        src.close()
    return 0
