"""``orbitwatch evals runs|show|compare|score|check-rules``: offline evaluation runs and local scoring."""
from __future__ import annotations

import argparse

HELP = "list, show or compare evaluation runs; score a text locally; validate an online rules file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.commands._views import add_source_args
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    runs = sub.add_parser("runs", help="evaluation runs, newest first")
    runs.add_argument("--project")
    runs.add_argument("--dataset", default="")
    runs.add_argument("--limit", type=int, default=20)
    add_source_args(runs)
    show = sub.add_parser("show", help="one run with per-item scores")
    show.add_argument("run_id")
    add_source_args(show)
    cmp = sub.add_parser("compare", help="compare runs; the first is the baseline")
    cmp.add_argument("run_ids", nargs="+")
    add_source_args(cmp)
    score = sub.add_parser("score", help="score one answer locally (no server, no network)")
    score.add_argument("--output", required=True, help="the answer to score")
    score.add_argument("--input", default="", help="the question")
    score.add_argument("--context", action="append", default=[], help="a context document (repeatable); "
                                                                       "@file reads a file")
    score.add_argument("--expected", help="reference answer")
    score.add_argument("--metric", action="append", help="metric name (repeatable; default: the RAG metrics)")
    score.add_argument("--json", action="store_true")
    chk = sub.add_parser("check-rules", help="validate an online scoring rules file (YAML or JSON)")
    chk.add_argument("file")


def run(args: argparse.Namespace) -> int:
    from orbitwatch.commands import _views as v
    from orbitwatch.errors import UserError

    if args.action == "score":
        return _score(args)
    if args.action == "check-rules":
        from orbitwatch.processors.evals.rules import RuleSet, RulesError, ValidationJudge
        try:
            rs = RuleSet.load(args.file, judge=ValidationJudge())
        except RulesError as exc:
            raise UserError(str(exc)) from None
        for c in rs.rules:
            r = c.rule
            print(f"{r.name}: {','.join(r.span_types)} spans, project {r.project or '*'}, sampling {r.sampling:g}, "
                  f"scope {r.scope}: {', '.join(m.name for m in c.metrics)}")
        return 0
    from orbitwatch.commands.datasets import backend
    b, settings = backend(args)
    if args.action == "runs":
        out = b.runs(args.project, args.dataset, args.limit)
        if args.json:
            v.print_json(out)
            return 0
        from rich.table import Table
        t = Table(title="evaluation runs", title_justify="left")
        for c in ("run_id", "name", "dataset", "items", "errors", "scores", "started"):
            t.add_column(c, overflow="fold")
        for r in out:
            t.add_row(r["run_id"], r["name"], f"{r['dataset']} v{r['dataset_version']}", str(r["item_count"]),
                      str(r["error_count"]), " ".join(f"{k}={val:.3f}" for k, val in sorted(r["scores"].items())),
                      str(r["started_at"])[:19])
        v.console().print(t)
    elif args.action == "show":
        run_ = b.get_run(args.run_id)
        if args.json:
            v.print_json(run_)
            return 0
        from rich.table import Table
        names = sorted(run_["scores"])
        t = Table(title=f"{run_['name']} ({run_['run_id']}) on {run_['dataset']} v{run_['dataset_version']}: "
                        + " ".join(f"{k}={run_['scores'][k]:.3f}" for k in names), title_justify="left")
        for c in ("item", "output", *names, "error"):
            t.add_column(c, overflow="fold")
        for it in run_["items"]:
            t.add_row(it["item_id"][:12], v._short(str(it["output"]), 50),
                      *[f"{it['scores'][n]:.3f}" if n in it["scores"] else "-" for n in names], it["error"])
        v.console().print(t)
    else:
        if len(args.run_ids) < 2:
            raise UserError("compare needs at least two run ids")
        cmp = b.compare(args.run_ids)
        if args.json:
            v.print_json(cmp)
            return 0
        from rich.table import Table
        runs = [r["run_id"] for r in cmp["runs"]]
        names = {r["run_id"]: r["name"] for r in cmp["runs"]}
        t = Table(title=f"baseline {names[cmp['baseline']]} ({cmp['baseline'][:8]})", title_justify="left")
        t.add_column("metric")
        for rid in runs:
            t.add_column(f"{names[rid]} ({rid[:8]})")
        for metric, m in sorted(cmp["metrics"].items()):
            cells = []
            for rid in runs:
                val = m["runs"].get(rid)
                d = m["delta_vs_baseline"].get(rid)
                cells.append("-" if val is None else f"{val:.3f}" + ("" if d is None else f" ({d:+.3f})"))
            t.add_row(metric, *cells)
        v.console().print(t)
    return 0


def _score(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from orbitwatch.errors import UserError
    from orbitwatch.processors.evals import metrics as M

    docs = [Path(c[1:]).read_text() if c.startswith("@") else c for c in args.context]
    item = M.EvalInput(input=args.input, output=args.output, context=docs, expected=args.expected)
    names = args.metric or ["hallucination", "answer_relevance", "context_precision", "context_recall"]
    results = []
    for name in names:
        try:
            m = M.create(name)
        except M.MetricError as exc:
            raise UserError(str(exc)) from None
        missing = m.missing(item)
        if missing:
            results.append({"name": name, "value": None, "reason": f"not scored: needs {', '.join(missing)}"})
            continue
        try:
            r = m.score(item)
        except M.MetricError as exc:
            results.append({"name": name, "value": None, "reason": f"not scored: {exc}"})
            continue
        results.append({"name": r.name, "value": r.value, "reason": r.reason})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            val = "  -  " if r["value"] is None else f"{r['value']:.3f}"
            print(f"{r['name']:<18} {val}  {r['reason']}")
    return 0
