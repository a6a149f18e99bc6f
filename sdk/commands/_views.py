"""Shared by the CLI views (traces, experiments, drift, alerts) and the demo summary: where the data
comes from, and how it is drawn with rich.

Source: by default the query API of the running instance (``--url`` / ``ORBITWATCH_API_URL``), so the
views work while ``orbitwatch up`` owns the embedded data dir; with ``--clickhouse DSN`` the same
queries (:mod:`orbitwatch.api.queries`) run straight against ClickHouse.
"""
from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from orbitwatch.errors import UserError

# query function -> (API path template, names of the path parameters)
_ROUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "list_traces": ("/api/v1/traces", ()),
    "get_trace": ("/api/v1/traces/{trace_id}", ("trace_id",)),
    "list_experiments": ("/api/v1/experiments", ()),
    "get_experiment": ("/api/v1/experiments/{experiment_id}", ("experiment_id",)),
    "metric_history": ("/api/v1/experiments/{experiment_id}/metrics", ("experiment_id",)),
    "compare_experiments": ("/api/v1/experiments/compare", ()),
    "drift_models": ("/api/v1/drift", ()),
    "drift_timeline": ("/api/v1/drift/{model}", ("model",)),
    "list_scores": ("/api/v1/scores", ()),
    "list_alerts": ("/api/v1/alerts", ()),
    "status": ("/api/v1/status", ()),
}
# API query-parameter name -> keyword of the query function (where they differ)
_KW = {"metric_history": {"name": "names"}, "drift_timeline": {"version": "version"},
       "compare_experiments": {"ids": "ids"}}


def add_source_args(p: argparse.ArgumentParser) -> None:
    from orbitwatch.cli import add_common
    add_common(p, "api_url", "api_key", "clickhouse_url")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer instead of a view")


class Source:
    """Calls a query by name, over HTTP (default) or directly on ClickHouse (``--clickhouse``)."""

    def __init__(self, api_url: str, api_key: str = "", clickhouse_url: str | None = None,
                 timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._storage = None
        if clickhouse_url:
            from orbitwatch.storage import Storage
            self._storage = Storage(clickhouse_url)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Source":
        from orbitwatch.cli import settings_from
        settings = settings_from(args)
        return cls(settings.api_url, settings.api_key, args.clickhouse_url)

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()

    def call(self, query: str, /, **params: Any) -> Any:
        params = {k: v for k, v in params.items() if v is not None and v != [] and v is not False}
        if self._storage is not None:
            return self._direct(query, params)
        path, path_params = _ROUTES[query]
        path = path.format(**{k: urllib.parse.quote(str(params.pop(k)), safe="") for k in path_params})
        return self.get(path, params)

    def _direct(self, name: str, params: dict[str, Any]) -> Any:
        from orbitwatch.api import queries as q
        if name == "status":
            return {"tables": q.table_counts(self._storage)}
        kw = {(_KW.get(name, {}).get(k, k)): v for k, v in params.items()}
        fn = getattr(q, name)
        try:
            out = fn(self._storage, **kw)
        except (q.QueryInputError, q.NotFound) as exc:
            raise UserError(str(exc)) from None
        return {"items": out} if name == "drift_models" else out

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            return api_request(self.api_url, path, self.api_key, params=params, timeout=self.timeout)
        except ApiUnreachable as exc:
            raise UserError(f"no orbitwatch API answers at {self.api_url} ({exc}); start `orbitwatch up`, "
                            "give --url, or query ClickHouse directly with --clickhouse DSN") from None


class ApiUnreachable(OSError):
    """Nothing answers at the API URL (the caller decides: fail, or go to ClickHouse directly)."""


def api_request(api_url: str, path: str, api_key: str = "", *, params: dict[str, Any] | None = None,
                body: Any = None, timeout: float = 30.0) -> Any:
    """GET (or POST ``body`` as JSON) one query-API path; returns the decoded JSON answer.

    An HTTP error answer becomes a one-line :class:`UserError` with the API's ``detail``; a connection
    failure raises :class:`ApiUnreachable`."""
    query = urllib.parse.urlencode(params or {}, doseq=True)
    url = f"{api_url.rstrip('/')}{path}" + (f"?{query}" if query else "")
    headers = {"accept": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", exc.reason)
        except Exception:
            detail = exc.reason
        raise UserError(f"{detail} (HTTP {exc.code} from {api_url})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiUnreachable(str(getattr(exc, "reason", exc))) from None


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
def console():
    """A rich console; when output is not a terminal (pipes, CI logs) use a wide page instead of 80."""
    import sys

    from rich.console import Console
    return Console() if sys.stdout.isatty() else Console(width=160)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _ms(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.1f} ms"


def _short(s: Any, n: int = 60) -> str:
    s = "" if s is None else str(s)
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _score_text(scores: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['name']}={s['value']:.2f}" for s in scores)


def traces_table(page: dict[str, Any]):
    from rich.table import Table
    t = Table(title="traces", title_justify="left")
    for c in ("trace id", "start", "project", "root", "spans", "duration", "tokens in/out", "cost $", "models",
              "status"):
        t.add_column(c, overflow="fold")
    for it in page["items"]:
        t.add_row(it["trace_id"], it["start_time"][:19].replace("T", " "), it["project"], _short(it["root_name"], 30),
                  str(it["spans"]), _ms(it["duration_ms"]), f"{it['input_tokens']}/{it['output_tokens']}",
                  f"{it['cost']:.5f}", ",".join(it["models"]),
                  "[red]error[/red]" if it["status"] == "error" else "ok")
    return t


def trace_tree(trace: dict[str, Any], show_io: bool = True):
    """A rich Tree: each span with type, duration, model, tokens, cost, status and its eval scores."""
    from rich.text import Text
    from rich.tree import Tree

    head = Text.assemble((f"trace {trace['trace_id']}", "bold"),
                         f"  {trace['span_count']} spans  {_ms(trace['duration_ms'])}  "
                         f"tokens {trace['input_tokens']}/{trace['output_tokens']}  cost ${trace['cost']:.5f}  "
                         f"project {trace['project']}")
    root = Tree(head)
    if trace.get("scores"):
        root.add(Text(f"trace scores: {_score_text(trace['scores'])}", style="magenta"))

    def add(node: Any, span: dict[str, Any]) -> None:
        err = span["status_code"] == "STATUS_CODE_ERROR"
        label = Text.assemble((span["span_name"], "bold red" if err else "bold"), f"  [{span['span_type']}] ",
                              (_ms(span["duration_ms"]), "cyan"))
        if span.get("model"):
            label.append(f"  {span['model']}" + (f" ({span['provider']})" if span.get("provider") else ""),
                         style="green")
        if span.get("input_tokens") or span.get("output_tokens"):
            label.append(f"  tokens {span['input_tokens']}/{span['output_tokens']}")
        if span.get("cost"):
            label.append(f"  ${span['cost']:.5f}")
        if err:
            label.append(f"  ERROR {span.get('status_message', '')}", style="red")
        branch = node.add(label)
        if show_io and span.get("input"):
            branch.add(Text(f"in:  {_short(span['input'], 100)}", style="dim"))
        if show_io and span.get("output"):
            branch.add(Text(f"out: {_short(span['output'], 100)}", style="dim"))
        for s in span.get("scores", []):
            style = "red" if s["name"] == "hallucination" and s["value"] >= 0.5 else "magenta"
            branch.add(Text(f"score {s['name']} = {s['value']:.2f} ({s['source']})"
                            + (f": {_short(s['reason'], 90)}" if s.get("reason") else ""), style=style))
        for child in span.get("children", []):
            add(branch, child)

    for span in trace["spans"]:
        add(root, span)
    return root


def experiments_table(page: dict[str, Any]):
    from rich.table import Table
    t = Table(title="experiments", title_justify="left")
    for c in ("id", "name", "project", "status", "started", "ended", "tags"):
        t.add_column(c, overflow="fold")
    for e in page["items"]:
        t.add_row(e["experiment_id"], e["name"], e["project"], e["status"],
                  (e["started_at"] or "")[:19].replace("T", " "), (e.get("ended_at") or "")[:19].replace("T", " "),
                  ",".join(e.get("tags") or []))
    return t


def sparkline(values: list[float], width: int = 30) -> str:
    if not values:
        return ""
    if len(values) > width:  # downsample by taking evenly spaced points
        values = [values[int(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    lo, hi = min(values), max(values)
    bars = "▁▂▃▄▅▆▇█"
    if hi == lo:
        return bars[3] * len(values)
    return "".join(bars[int((v - lo) / (hi - lo) * (len(bars) - 1))] for v in values)


def experiment_view(exp: dict[str, Any], history: dict[str, Any] | None = None):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = [Text.assemble((f"experiment {exp['experiment_id']}", "bold"),
                                      f"  {exp['name']}  [{exp['status']}]  project {exp['project']}")]
    params = Table(title="parameters", title_justify="left")
    params.add_column("name")
    params.add_column("value", overflow="fold")
    for k, v in exp["params"].items():
        params.add_row(k, str(v))
    parts.append(params)
    series = (history or {}).get("series", {})
    metrics = Table(title="metrics", title_justify="left")
    for c in ("name", "points", "last", "min", "max", "last step", "curve"):
        metrics.add_column(c)
    for m in exp["metrics"]:
        curve = sparkline([p["value"] for p in series.get(m["name"], [])])
        metrics.add_row(m["name"], str(m["points"]), f"{m['last']:.4g}", f"{m['min']:.4g}", f"{m['max']:.4g}",
                        str(m["last_step"]), curve)
    parts.append(metrics)
    return Group(*parts)


def compare_view(cmp: dict[str, Any]):
    from rich.table import Table
    ids = [e["experiment_id"] for e in cmp["experiments"]]
    names = {e["experiment_id"]: e["name"] or e["experiment_id"][:8] for e in cmp["experiments"]}
    t = Table(title="comparison (parameters that differ in yellow)", title_justify="left")
    t.add_column("")
    for i in ids:
        t.add_column(names[i], overflow="fold")
    for p, vals in cmp["params"].items():
        style = "yellow" if p in cmp["params_differ"] else None
        t.add_row(f"param {p}", *(str(vals.get(i)) for i in ids), style=style)
    for m, vals in cmp["metrics"].items():
        t.add_row(f"{m} (last)", *(f"{vals[i]['last']:.4g}" if vals.get(i) else "" for i in ids))
    return t


def drift_view(tl: dict[str, Any], model: str, primary_only: bool = False):
    from rich.table import Table
    t = Table(title=f"drift of {model} over {len({r['window_start'] for r in tl['items']})} windows "
                    "(* = the feature's deciding test)", title_justify="left")
    for c in ("feature", "metric", "windows", "drifted windows", "last value", "max value", "threshold", "now"):
        t.add_column(c)
    for s in tl["summary"]:
        if not primary_only or s.get("primary"):
            t.add_row(s["feature"], ("* " if s.get("primary") else "  ") + s["metric"], str(s["windows"]),
                  str(s["drifted_windows"]),
                  f"{s['last_value']:.4g}", f"{s['max_value']:.4g}", f"{s['threshold']:.4g}",
                  "[red]DRIFT[/red]" if s["last_drifted"] else "ok",
                  style="bold" if s["drifted_windows"] and s.get("primary") else None)
    return t


def alerts_table(page: dict[str, Any]):
    from rich.table import Table
    t = Table(title="alerts", title_justify="left")
    for c in ("status", "rule", "severity", "labels", "summary", "since", "value"):
        t.add_column(c, overflow="fold")
    for a in page["items"]:
        labels = {k: v for k, v in (a.get("labels") or {}).items() if k not in ("alertname", "severity")}
        t.add_row("[red]firing[/red]" if a["status"] == "firing" else "[green]resolved[/green]", a["rule"],
                  a.get("severity", ""), " ".join(f"{k}={v}" for k, v in labels.items()),
                  (a.get("annotations") or {}).get("summary", ""), (a.get("starts_at") or "")[:19].replace("T", " "),
                  f"{a.get('value', 0):.4g}")
    return t


def counts_table(counts: dict[str, int]):
    from rich.table import Table
    t = Table(title="rows per table", title_justify="left")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for k, v in counts.items():
        t.add_row(k, str(v))
    return t
