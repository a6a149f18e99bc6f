"""``orbitwatch demo``: send realistic telemetry with the SDK, wait until it landed, show a summary."""
from __future__ import annotations

import argparse
import time

HELP = "send demo telemetry (training runs, a RAG app, a drifting production model) and summarise what landed"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.cli import add_common
    add_common(p, "endpoint", "api_key", "api_url")
    p.add_argument("--wait", type=float, default=90.0,
                   help="seconds to wait for results (scores, drift, alerts) to land before the summary (default 90)")
    p.add_argument("--no-summary", action="store_true", help="only send; do not query the API afterwards")


def run(args: argparse.Namespace) -> int:
    from orbitwatch.cli import settings_from
    from orbitwatch.commands import _views as v
    from orbitwatch.demo import send_all

    settings = settings_from(args)
    con = v.console()
    t0 = time.monotonic()
    with con.status(f"sending demo telemetry to {settings.endpoint} …"):
        sent = send_all(settings.endpoint, settings.api_key)
    con.print(f"sent: {len(sent.experiment_ids)} experiments ({sent.metric_points} metric points), "
              f"{len(sent.trace_ids)} RAG traces ({len(sent.hallucinated_trace_ids)} with hallucinated answers, "
              f"{len(sent.error_trace_ids)} failing), {sent.predictions} predictions + {sent.labels} labels "
              f"in {time.monotonic() - t0:.1f} s")
    if args.no_summary:
        return 0
    src = v.Source(settings.api_url, settings.api_key)
    missing = wait_for_results(src, sent, args.wait, con)
    summary(src, sent, con)
    if missing:
        con.print("[yellow]not landed within the wait:[/yellow] " + "; ".join(missing))
        return 1
    return 0


def _expectations(src, sent) -> dict[str, callable]:
    """name -> check() returning True when that part of the demo is visible through the API."""
    from orbitwatch.demo import DRIFTED_FEATURE, MODEL, PROJECT

    status = src.call("status")
    procs = set(status.get("processors") or ["sink", "drift", "evals", "alerts"])

    def experiments() -> bool:
        points = 0
        for eid in sent.experiment_ids:
            try:
                points += sum(m["points"] for m in src.call("get_experiment", experiment_id=eid)["metrics"])
            except Exception:
                return False
        return points >= sent.metric_points

    def traces() -> bool:
        page = src.call("list_traces", project=PROJECT, limit=200)
        return len({t["trace_id"] for t in page["items"]} & set(sent.trace_ids)) == len(sent.trace_ids)

    def predictions() -> bool:
        return src.call("status")["tables"].get("predictions", 0) >= sent.predictions

    def scores() -> bool:
        page = src.call("list_scores", project=PROJECT, name="hallucination", limit=1000)
        scored = {s["trace_id"] for s in page["items"]}
        return set(sent.hallucinated_trace_ids) <= scored

    def drift() -> bool:
        tl = src.call("drift_timeline", model=MODEL, project=PROJECT, final_only=True, limit=1000)
        return DRIFTED_FEATURE in tl["drifted_features"]

    def alerts() -> bool:
        return bool(src.call("list_alerts", limit=10)["items"])

    checks = {"experiments": experiments, "traces": traces, "predictions": predictions}
    if "evals" in procs:
        checks["eval scores"] = scores
    if "drift" in procs:
        checks["drift"] = drift
    if "alerts" in procs and "drift" in procs:
        checks["alerts"] = alerts
    return checks


def wait_for_results(src, sent, timeout: float, con) -> list[str]:
    """Poll the API until every part of the demo is visible; returns what is still missing."""
    deadline = time.monotonic() + timeout
    checks = _expectations(src, sent)
    pending = dict(checks)
    with con.status("waiting for the pipeline …") as st:
        while pending and time.monotonic() < deadline:
            for name, check in list(pending.items()):
                try:
                    ok = check()
                except Exception:
                    ok = False
                if ok:
                    del pending[name]
            st.update(f"waiting for the pipeline … ({', '.join(pending) or 'done'})")
            if pending:
                time.sleep(0.5)
    return list(pending)


def summary(src, sent, con) -> None:
    """Rows per table, a hallucinated trace as a tree, the experiment comparison, drift, alerts."""
    from orbitwatch.commands import _views as v
    from orbitwatch.demo import MODEL, PROJECT

    con.rule("what landed")
    con.print(v.counts_table(src.call("status")["tables"]))
    for tid in sent.hallucinated_trace_ids[:1] + sent.grounded_trace_ids[:1]:
        try:
            con.print(v.trace_tree(src.call("get_trace", trace_id=tid), show_io=True))
        except Exception as exc:
            con.print(f"trace {tid}: {exc}")
    try:
        con.print(v.compare_view(src.call("compare_experiments", ids=sent.experiment_ids)))
    except Exception as exc:
        con.print(f"experiments: {exc}")
    try:
        tl = src.call("drift_timeline", model=MODEL, project=PROJECT, final_only=True, limit=1000)
        if tl["items"]:
            con.print(v.drift_view(tl, MODEL, primary_only=True))
            con.print("drifted features: " + (", ".join(tl["drifted_features"]) or "none"), style="bold")
    except Exception as exc:
        con.print(f"drift: {exc}")
    try:
        alerts = src.call("list_alerts", limit=20)
        if alerts["items"]:
            con.print(v.alerts_table(alerts))
    except Exception as exc:
        con.print(f"alerts: {exc}")
    base = src.api_url
    con.print(f"explore: orbitwatch traces ls --url {base} · orbitwatch experiments ls --url {base} · "
              f"orbitwatch drift {MODEL} --url {base} · orbitwatch alerts --url {base} · {base}/docs")
