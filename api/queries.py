"""The read side of Orbitwatch: every query behind the HTTP API and the CLI views, in one place.

Both ``orbitwatch api``/``up`` (HTTP) and the CLI's ``--clickhouse DSN`` mode call these functions,
so a view shows the same thing whichever way it is reached. Each takes a :class:`Storage`, a
:class:`Scope` (which tenant/project the caller may see) and plain filter arguments, and returns
JSON-ready dicts. All SQL is parameterised (``%(name)s``); nothing from the caller is formatted in.

Tables with replays (ReplacingMergeTree) are read with ``FINAL`` so a replayed record never shows twice.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from orbitwatch.storage import Storage

MAX_LIMIT = 1000
# Spans that carry SDK records (experiments, monitoring) rather than application work.
CARRIER_KINDS = ("experiment", "experiment.batch", "prediction", "label", "reference")
_REL = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class QueryInputError(ValueError):
    """A filter value the caller gave cannot be used (HTTP 400 / CLI one-line error)."""


class NotFound(LookupError):
    """The trace / experiment does not exist, or the caller's scope does not include it (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What a caller may read: ``tenant`` None = every tenant (auth disabled); ``project`` None = any."""

    tenant: str | None = None
    project: str | None = None

    def project_filter(self, requested: str | None) -> str | None:
        if self.project is not None:
            if requested not in (None, "", self.project):
                raise NotFound(f"project {requested!r} is not visible with this API key")
            return self.project
        return requested or None


def parse_time(value: str | datetime | None) -> datetime | None:
    """ISO 8601 (``2026-01-02T03:04:05Z``), epoch seconds, or relative to now (``15m``, ``2h``, ``7d``);
    ``all`` (or nothing) = no bound."""
    if value is None or value == "" or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    v = value.strip()
    m = _REL.match(v)
    if m:
        return datetime.now(timezone.utc) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        return datetime.fromtimestamp(float(v), timezone.utc)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise QueryInputError(f"cannot read time {value!r}: use ISO 8601, epoch seconds or e.g. 15m / 2h / 7d") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _limit(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryInputError(f"limit must be 1..{MAX_LIMIT}")
    if offset < 0:
        raise QueryInputError("offset must be ≥ 0")
    return limit, offset


def page(items: list[dict[str, Any]], limit: int, offset: int) -> dict[str, Any]:
    """Pagination envelope used by every list endpoint: ask again with ``offset=next_offset``."""
    return {"items": items, "limit": limit, "offset": offset,
            "next_offset": offset + limit if len(items) == limit else None}


def jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, float) and v != v:  # NaN is not JSON
        return None
    return v


def _rows(storage: Storage, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cols, rows = storage.query(sql, params)
    return [{c: jsonable(v) for c, v in zip(cols, r)} for r in rows]


def _tenant_clause(scope: Scope, params: dict[str, Any], column: str = "tenant") -> str:
    if scope.tenant is None:
        return ""
    params["scope_tenant"] = scope.tenant
    return f" AND {column} = %(scope_tenant)s"


def _where(scope: Scope, params: dict[str, Any], project: str | None, base: str = "1",
           equals: tuple[tuple[str, Any], ...] = (), since: str | datetime | None = None,
           since_column: str = "") -> str:
    """The WHERE clause most list queries share: the caller's tenant and project scope, optional
    ``column = value`` filters (skipped when the value is empty) and ``since_column >= since``;
    values go into ``params`` (bound by ClickHouse, never formatted into the SQL)."""
    where = base + _tenant_clause(scope, params)
    proj = scope.project_filter(project)
    if proj:
        params["project"] = proj
        where += " AND project = %(project)s"
    for col, val in equals:
        if val:
            params[col] = val
            where += f" AND {col} = %({col})s"
    if since_column and (t := parse_time(since)) is not None:
        params["since"] = t
        where += f" AND {since_column} >= %(since)s"
    return where


# ---------------------------------------------------------------------------------------------
# traces
# ---------------------------------------------------------------------------------------------
def list_traces(storage: Storage, scope: Scope = Scope(), *, project: str | None = None,
                since: str | datetime | None = None, until: str | datetime | None = None,
                span_type: str | None = None, model: str | None = None, status: str | None = None,
                min_latency_ms: float | None = None, has_score: str | bool | None = None,
                service: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Traces (newest first), one row each, filtered on any of their spans.

    ``status``: ``error`` (some span failed) or ``ok``; ``has_score``: true / a score name (e.g.
    ``hallucination``) to keep traces that have eval scores; ``min_latency_ms`` on the trace's span.
    """
    limit, offset = _limit(limit, offset)
    params: dict[str, Any] = {"carriers": list(CARRIER_KINDS), "limit": limit, "offset": offset}
    where = _where(scope, params, project, "span_attributes['orbitwatch.kind'] NOT IN %(carriers)s",
                   since=since, since_column="timestamp")
    if (t := parse_time(until)) is not None:
        params["until"] = t
        where += " AND timestamp <= %(until)s"
    if service:
        params["service"] = service
        where += " AND service_name = %(service)s"
    having = ["1"]
    if span_type:
        params["span_type"] = span_type
        having.append("countIf(span_type = %(span_type)s) > 0")
    if model:
        params["model"] = model
        having.append("countIf(model = %(model)s) > 0")
    if status:
        if status not in ("error", "ok"):
            raise QueryInputError("status must be 'error' or 'ok'")
        having.append("t_errors > 0" if status == "error" else "t_errors = 0")
    if min_latency_ms is not None:
        params["min_ns"] = int(float(min_latency_ms) * 1e6)
        having.append("t_duration_ns >= %(min_ns)s")
    if has_score not in (None, "", False, "false", "0"):
        score_where = "1" + _tenant_clause(scope, params)
        if isinstance(has_score, str) and has_score not in ("true", "1"):
            params["score_name"] = has_score
            score_where += " AND name = %(score_name)s"
        where += f" AND trace_id IN (SELECT trace_id FROM eval_scores WHERE {score_where})"
    # Aliases differ from column names: ClickHouse would otherwise resolve WHERE's columns to them.
    sql = f"""
        SELECT trace_id, any(project) AS t_project, min(timestamp) AS t_start_time,
               argMin(span_name, if(parent_span_id = '', 0, 1)) AS t_root_name,
               argMin(service_name, if(parent_span_id = '', 0, 1)) AS t_service_name,
               toUInt64(max(toUnixTimestamp64Nano(timestamp) + duration_ns) - min(toUnixTimestamp64Nano(timestamp)))
                   AS t_duration_ns,
               count() AS t_spans, countIf(status_code = 'STATUS_CODE_ERROR') AS t_errors,
               sum(input_tokens) AS t_input_tokens, sum(output_tokens) AS t_output_tokens, sum(cost) AS t_cost,
               arrayFilter(x -> x != '', groupUniqArray(model)) AS t_models,
               arrayFilter(x -> x != 'general', groupUniqArray(span_type)) AS t_span_types
        FROM spans FINAL WHERE {where}
        GROUP BY trace_id HAVING {' AND '.join(having)}
        ORDER BY t_start_time DESC, trace_id LIMIT %(limit)s OFFSET %(offset)s"""
    items = [{k.removeprefix("t_"): v for k, v in it.items()}
             for it in _rows(storage, sql, params)]
    for it in items:
        it["duration_ms"] = round(it.pop("duration_ns") / 1e6, 3)
        it["status"] = "error" if it["errors"] else "ok"
    return page(items, limit, offset)


SPAN_COLUMNS = ("span_id, parent_span_id, span_name, span_kind, span_type, service_name, project, timestamp, "
                "duration_ns, status_code, status_message, model, provider, input, output, input_tokens, "
                "output_tokens, cost, session_id, user_id, tags, span_attributes, resource_attributes, "
                "`events.timestamp` AS event_times, `events.name` AS event_names, "
                "`events.attributes` AS event_attributes")


def get_trace(storage: Storage, trace_id: str, scope: Scope = Scope()) -> dict[str, Any]:
    """One trace as a tree of spans, each with its eval scores (and trace-level scores on the root).

    The ``spans_trace_id_ts`` lookup table gives the trace's time range first, so the span read
    touches only the partitions of that range instead of every day's bloom filter.
    """
    if not re.fullmatch(r"[0-9a-fA-F]{1,64}", trace_id or ""):
        raise QueryInputError("trace id must be hex")
    trace_id = trace_id.lower()
    params: dict[str, Any] = {"trace_id": trace_id}
    _, rng = storage.query("SELECT min(start), max(end), count() FROM spans_trace_id_ts WHERE trace_id = %(trace_id)s",
                           params)
    where = "trace_id = %(trace_id)s"
    if rng and rng[0][2]:
        params["t0"], params["t1"] = rng[0][0], rng[0][1] + timedelta(seconds=1)
        where += " AND timestamp >= %(t0)s AND timestamp <= %(t1)s"
    where += _tenant_clause(scope, params)
    if scope.project:
        params["scope_project"] = scope.project
        where += " AND project = %(scope_project)s"
    spans = _rows(storage, f"SELECT {SPAN_COLUMNS} FROM spans FINAL WHERE {where} ORDER BY timestamp, span_id", params)
    if not spans:
        raise NotFound(f"trace {trace_id} not found")
    score_params: dict[str, Any] = {"trace_id": trace_id}
    scores = _rows(storage, "SELECT entity_type, entity_id, name, value, reason, source, category, annotator, "
                            "rule, timestamp FROM eval_scores FINAL WHERE trace_id = %(trace_id)s"
                            + _tenant_clause(scope, score_params) + " ORDER BY name, source", score_params)
    by_span: dict[str, list[dict[str, Any]]] = {}
    for s in scores:
        by_span.setdefault(s["entity_id"] if s["entity_type"] == "span" else "", []).append(s)
    nodes: dict[str, dict[str, Any]] = {}
    for s in spans:
        s["duration_ms"] = round(s.pop("duration_ns") / 1e6, 3)
        s["events"] = [{"timestamp": t, "name": n, "attributes": a}
                       for t, n, a in zip(s.pop("event_times"), s.pop("event_names"), s.pop("event_attributes"))]
        s["scores"] = by_span.get(s["span_id"], [])
        s["children"] = []
        nodes[s["span_id"]] = s
    roots = []
    for s in spans:
        parent = nodes.get(s["parent_span_id"])
        (parent["children"] if parent is not None and parent is not s else roots).append(s)
    t0 = min(datetime.fromisoformat(s["timestamp"]) for s in spans)
    t1 = max(datetime.fromisoformat(s["timestamp"]) + timedelta(milliseconds=s["duration_ms"]) for s in spans)
    return {"trace_id": trace_id, "project": spans[0]["project"], "start_time": t0.isoformat(),
            "duration_ms": round((t1 - t0).total_seconds() * 1000, 3), "span_count": len(spans),
            "input_tokens": sum(s["input_tokens"] for s in spans),
            "output_tokens": sum(s["output_tokens"] for s in spans),
            "cost": sum(s["cost"] for s in spans), "errors": sum(s["status_code"] == "STATUS_CODE_ERROR" for s in spans),
            "scores": by_span.get("", []), "spans": roots}


# ---------------------------------------------------------------------------------------------
# experiments
# ---------------------------------------------------------------------------------------------
_EXP_COLS = "experiment_id, project, workspace, name, status, started_at, ended_at, tags, updated_at"


def list_experiments(storage: Storage, scope: Scope = Scope(), *, project: str | None = None,
                     search: str | None = None, status: str | None = None, tag: str | None = None,
                     limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Experiments, newest first; ``search`` matches the name or the id prefix (case-insensitive)."""
    limit, offset = _limit(limit, offset)
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    where = _where(scope, params, project)
    if search:
        params["q"] = f"%{search}%"
        params["qid"] = f"{search}%"
        where += " AND (name ILIKE %(q)s OR experiment_id LIKE %(qid)s)"
    if status:
        params["status"] = status
        where += " AND status = %(status)s"
    if tag:
        params["tag"] = tag
        where += " AND has(tags, %(tag)s)"
    items = _rows(storage, f"SELECT {_EXP_COLS} FROM experiments FINAL WHERE {where} "
                           "ORDER BY started_at DESC, experiment_id LIMIT %(limit)s OFFSET %(offset)s", params)
    return page(items, limit, offset)


def _experiment(storage: Storage, experiment_id: str, scope: Scope) -> dict[str, Any]:
    params: dict[str, Any] = {"id": experiment_id, "idp": f"{experiment_id}%"}
    where = "(experiment_id = %(id)s OR (length(%(id)s) >= 6 AND experiment_id LIKE %(idp)s))" + \
        _tenant_clause(scope, params)
    if scope.project:
        params["scope_project"] = scope.project
        where += " AND project = %(scope_project)s"
    rows = _rows(storage, f"SELECT {_EXP_COLS}, system FROM experiments FINAL WHERE {where} LIMIT 2", params)
    if not rows:
        raise NotFound(f"experiment {experiment_id} not found")
    if len(rows) > 1:
        raise QueryInputError(f"experiment id prefix {experiment_id!r} is ambiguous")
    return rows[0]


def get_experiment(storage: Storage, experiment_id: str, scope: Scope = Scope()) -> dict[str, Any]:
    """One experiment: its row, parameters, others, and a summary of every metric."""
    exp = _experiment(storage, experiment_id, scope)
    p = {"id": exp["experiment_id"]}
    exp["params"] = {r["name"]: r["value"] for r in _rows(
        storage, "SELECT name, value FROM experiment_params FINAL WHERE experiment_id = %(id)s ORDER BY name", p)}
    exp["others"] = {r["name"]: r["value"] for r in _rows(
        storage, "SELECT name, value FROM experiment_others FINAL WHERE experiment_id = %(id)s ORDER BY name", p)}
    exp["metrics"] = _rows(storage, """
        SELECT name, count() AS points, min(value) AS min, max(value) AS max,
               argMax(value, (step, seq)) AS last, max(step) AS last_step, max(epoch) AS last_epoch,
               max(timestamp) AS last_time
        FROM experiment_metrics FINAL WHERE experiment_id = %(id)s GROUP BY name ORDER BY name""", p)
    exp["assets"] = _rows(storage, "SELECT name, kind, uri, size FROM experiment_assets FINAL "
                                   "WHERE experiment_id = %(id)s ORDER BY kind, name", p)
    return exp


def metric_history(storage: Storage, experiment_id: str, scope: Scope = Scope(), *,
                   names: list[str] | None = None, x: str = "step", limit: int = 1000,
                   offset: int = 0) -> dict[str, Any]:
    """Every logged point of the experiment's metrics (all points are kept), ordered by ``x``:
    ``step``, ``epoch`` or ``time``. Paginated over points."""
    if x not in ("step", "epoch", "time"):
        raise QueryInputError("x must be step, epoch or time")
    limit, offset = _limit(limit, offset)
    exp = _experiment(storage, experiment_id, scope)
    params: dict[str, Any] = {"id": exp["experiment_id"], "limit": limit, "offset": offset}
    where = "experiment_id = %(id)s"
    if names:
        params["names"] = list(names)
        where += " AND name IN %(names)s"
    order = {"step": "step, seq", "epoch": "epoch, step, seq", "time": "timestamp, seq"}[x]
    pts = _rows(storage, f"SELECT name, step, epoch, value, timestamp FROM experiment_metrics FINAL WHERE {where} "
                         f"ORDER BY name, {order} LIMIT %(limit)s OFFSET %(offset)s", params)
    series: dict[str, list[dict[str, Any]]] = {}
    for p in pts:
        series.setdefault(p.pop("name"), []).append(p)
    out = page(pts, limit, offset)
    out.pop("items")
    out.update({"experiment_id": exp["experiment_id"], "x": x, "series": series})
    return out


def compare_experiments(storage: Storage, ids: list[str], scope: Scope = Scope()) -> dict[str, Any]:
    """Side by side: parameters (with the names whose values differ) and each metric's last/min/max."""
    if not 2 <= len(ids) <= 20:
        raise QueryInputError("compare needs 2 to 20 experiment ids")
    exps = [get_experiment(storage, i, scope) for i in ids]
    names = sorted({k for e in exps for k in e["params"]})
    differ = [n for n in names if len({e["params"].get(n) for e in exps}) > 1]
    metric_names = sorted({m["name"] for e in exps for m in e["metrics"]})
    metrics = {n: {e["experiment_id"]: next(({k: m[k] for k in ("last", "min", "max", "points")}
                                              for m in e["metrics"] if m["name"] == n), None) for e in exps}
               for n in metric_names}
    return {"experiments": [{k: e[k] for k in ("experiment_id", "name", "project", "status", "started_at",
                                               "ended_at")} for e in exps],
            "params": {n: {e["experiment_id"]: e["params"].get(n) for e in exps} for n in names},
            "params_differ": differ, "metrics": metrics}


# ---------------------------------------------------------------------------------------------
# monitoring: drift, eval scores, alerts
# ---------------------------------------------------------------------------------------------
def drift_models(storage: Storage, scope: Scope = Scope(), *, project: str | None = None) -> list[dict[str, Any]]:
    """Every monitored model with drift results, and how many of its latest-window features drifted."""
    params: dict[str, Any] = {}
    where = _where(scope, params, project)
    return _rows(storage, f"""
        SELECT project, model, model_version, count() AS results, max(window_end) AS last_window_end,
               uniqExactIf(feature, drifted AND is_primary AND NOT startsWith(feature, '__')) AS drifted_features,
               uniqExactIf(feature, NOT startsWith(feature, '__')) AS features
        FROM drift_results FINAL WHERE {where}
        GROUP BY project, model, model_version ORDER BY project, model, model_version""", params)


def drift_timeline(storage: Storage, model: str, scope: Scope = Scope(), *, project: str | None = None,
                   version: str | None = None, feature: str | None = None, metric: str | None = None,
                   since: str | datetime | None = None, final_only: bool = False, limit: int = 1000,
                   offset: int = 0) -> dict[str, Any]:
    """Drift results of one model over time (a window per row), plus a per-feature summary."""
    limit, offset = _limit(limit, offset)
    params: dict[str, Any] = {"model": model, "limit": limit, "offset": offset}
    where = _where(scope, params, project, "model = %(model)s",
                   (("model_version", version), ("feature", feature), ("metric", metric)), since, "window_end")
    if final_only:
        where += " AND is_final"
    items = _rows(storage, f"""
        SELECT project, model, model_version, feature, metric, is_primary, value, threshold, drifted, p_value,
               window_start, window_end, is_final, sample_size, reference_size, computed_at
        FROM drift_results FINAL WHERE {where}
        ORDER BY window_start, feature, metric LIMIT %(limit)s OFFSET %(offset)s""", params)
    summary = _rows(storage, f"""
        SELECT feature, metric, max(is_primary) AS primary, count() AS windows, countIf(drifted) AS drifted_windows,
               argMax(value, window_start) AS last_value, argMax(drifted, window_start) AS last_drifted,
               max(value) AS max_value, any(threshold) AS threshold
        FROM drift_results FINAL WHERE {where} GROUP BY feature, metric ORDER BY feature, primary DESC, metric""",
                    {k: v for k, v in params.items() if k not in ("limit", "offset")})
    out = page(items, limit, offset)
    out["summary"] = summary
    # A feature is drifted when its primary test (the one the drift processor decides with, after
    # Benjamini-Hochberg) flagged a window; the other metrics are shown for context only.
    out["drifted_features"] = sorted({s["feature"] for s in summary if s["drifted_windows"] and s["primary"]
                                      and not s["feature"].startswith("__")})
    return out


def list_scores(storage: Storage, scope: Scope = Scope(), *, project: str | None = None,
                name: str | None = None, source: str | None = None, trace_id: str | None = None,
                since: str | datetime | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Eval scores, newest first, with per-name aggregates over the same filter."""
    limit, offset = _limit(limit, offset)
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    where = _where(scope, params, project, equals=(("name", name), ("source", source), ("trace_id", trace_id)),
                   since=since, since_column="timestamp")
    items = _rows(storage, f"""
        SELECT project, entity_type, entity_id, trace_id, name, value, reason, source, category, annotator,
               rule, scorer_version, timestamp
        FROM eval_scores FINAL WHERE {where} ORDER BY timestamp DESC, entity_id, name
        LIMIT %(limit)s OFFSET %(offset)s""", params)
    summary = _rows(storage, f"""
        SELECT name, source, count() AS count, avg(value) AS mean, min(value) AS min, max(value) AS max
        FROM eval_scores FINAL WHERE {where} GROUP BY name, source ORDER BY name, source""",
                    {k: v for k, v in params.items() if k not in ("limit", "offset")})
    out = page(items, limit, offset)
    out["summary"] = summary
    return out


def list_alerts(storage: Storage, scope: Scope = Scope(), *, status: str | None = None,
                rule: str | None = None, since: str | datetime | None = None, history: bool = False,
                limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Alerts: by default the current state of each alert (its latest transition); ``history=True``
    lists every transition. ``status`` filters firing / resolved. With auth on, an alert is visible
    to a tenant when its ``tenant`` label is that tenant or, without one, when its ``project`` label is
    a project of that tenant (from its drift results, eval scores or experiments)."""
    limit, offset = _limit(limit, offset)
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    where = "1"
    if scope.tenant is not None:
        # Alerts carry a tenant label when their rule has one; otherwise they belong to the tenant
        # whose drift results / eval scores / experiments use the alert's project.
        params["scope_tenant"] = scope.tenant
        where += (" AND (labels['tenant'] = %(scope_tenant)s OR (labels['tenant'] = '' AND labels['project'] IN ("
                  "SELECT DISTINCT project FROM drift_results WHERE tenant = %(scope_tenant)s UNION DISTINCT "
                  "SELECT DISTINCT project FROM eval_scores WHERE tenant = %(scope_tenant)s UNION DISTINCT "
                  "SELECT DISTINCT project FROM experiments WHERE tenant = %(scope_tenant)s)))")
    if scope.project:
        params["scope_project"] = scope.project
        where += " AND labels['project'] = %(scope_project)s"
    if rule:
        params["rule"] = rule
        where += " AND rule = %(rule)s"
    if (t := parse_time(since)) is not None:
        params["since"] = t
        where += " AND transition_at >= %(since)s"
    cols = "rule, fingerprint, status, severity, labels, annotations, value, starts_at, ends_at, generator_url, " \
           "transition_at"
    if status and status not in ("firing", "resolved"):
        raise QueryInputError("status must be firing or resolved")
    if history:
        st = " AND status = %(status)s" if status else ""
        sql = (f"SELECT {cols} FROM alerts FINAL WHERE {where}{st} "
               "ORDER BY transition_at DESC LIMIT %(limit)s OFFSET %(offset)s")
    else:
        cols_l = [c for c in cols.split(", ") if c not in ("fingerprint", "transition_at")]
        latest = ", ".join(f"argMax({c}, transition_at) AS a_{c}" for c in cols_l)
        st = " HAVING a_status = %(status)s" if status else ""
        sql = (f"SELECT fingerprint, {latest}, max(transition_at) AS a_transition_at FROM alerts FINAL "
               f"WHERE {where} GROUP BY fingerprint{st} ORDER BY a_transition_at DESC "
               "LIMIT %(limit)s OFFSET %(offset)s")
        if status:
            params["status"] = status
        return page([{k.removeprefix("a_"): v for k, v in r.items()} for r in _rows(storage, sql, params)],
                    limit, offset)
    if status:
        params["status"] = status
    return page(_rows(storage, sql, params), limit, offset)


def table_counts(storage: Storage, tables: tuple[str, ...] = (
        "spans", "experiments", "experiment_params", "experiment_metrics", "predictions", "reference_features",
        "drift_results", "data_quality", "eval_scores", "alerts", "metrics_gauge", "metrics_sum", "logs",
        "dead_letters")) -> dict[str, int]:
    """Rows per table (FINAL where replays are possible); used by the demo summary and /api/v1/status."""
    out: dict[str, int] = {}
    for t in tables:
        try:
            out[t] = int(storage.scalar(f"SELECT count() FROM {t} FINAL") or 0)
        except Exception:
            try:
                out[t] = int(storage.scalar(f"SELECT count() FROM {t}") or 0)
            except Exception:
                continue
    return out


def dumps(obj: Any) -> str:
    return json.dumps(jsonable(obj), default=str)
