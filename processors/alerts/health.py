"""Span-health measurements for ``kind: span_health`` rules, from the per-minute rollup.

``spans_rollup_1m`` (migration 0006) holds count, errors, duration t-digest, tokens and cost per
(minute, project, service_name, model, span_type). One query per rule and evaluation covers the
window and, for ``volume_ratio``, the trailing baseline before it, using -MergeIf combinators.
The current minute is partial and included: a rule over 5m sees 4-5 minutes of data.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from orbitwatch.processors.alerts.rules import Rule

_QUANTILE_INDEX = {"p50_latency_ms": 1, "p90_latency_ms": 2, "p95_latency_ms": 3, "p99_latency_ms": 4}


@dataclass
class Measurement:
    labels: dict[str, str]
    value: float
    samples: int


def measure(storage: Any, rule: Rule, now: float) -> list[Measurement]:
    """One value per ``by`` label combination; series with spans in the baseline but none in the
    window appear with volume 0 (a drop to nothing is the volume drop that matters most)."""
    by = list(rule.by)
    cols = ", ".join(by)
    start = datetime.fromtimestamp(now - rule.window, timezone.utc).replace(tzinfo=None)
    base_start = datetime.fromtimestamp(now - rule.window - rule.baseline, timezone.utc).replace(tzinfo=None)
    where = ["minute >= {base:DateTime}"]
    params: dict[str, Any] = {"start": start, "base": base_start}
    if rule.project != "*":
        where.append("project LIKE {project:String}")
        params["project"] = rule.project.replace("*", "%").replace("?", "_")
    if rule.model != "*":
        where.append("model LIKE {model:String}")
        params["model"] = rule.model.replace("*", "%").replace("?", "_")
    cur = "minute >= {start:DateTime}"
    sql = (f"SELECT {cols}{', ' if cols else ''}"
           f"countMergeIf(spans, {cur}) AS n, sumIf(errors, {cur}) AS errors, "
           f"quantilesTDigestMergeIf(0.5, 0.9, 0.95, 0.99)(duration_quantiles, {cur}) AS q, "
           f"sumIf(cost, {cur}) AS cost, sumIf(input_tokens + output_tokens, {cur}) AS tokens, "
           f"countMergeIf(spans, NOT ({cur})) AS base_n "
           f"FROM spans_rollup_1m WHERE {' AND '.join(where)}"
           f"{' GROUP BY ' + cols if cols else ''}")
    out: list[Measurement] = []
    for row in storage.query_dicts(sql, params):
        n = int(row["n"])
        labels = {k: str(row[k]) for k in by}
        metric = rule.metric
        hours = rule.window / 3600.0
        if metric in _QUANTILE_INDEX:
            if n == 0:
                continue
            value = float(row["q"][_QUANTILE_INDEX[metric] - 1]) / 1e6
        elif metric == "error_rate":
            if n == 0:
                continue
            value = int(row["errors"]) / n
        elif metric == "span_count":
            value = float(n)
        elif metric == "cost_per_hour":
            value = float(row["cost"]) / hours
        elif metric == "tokens_per_hour":
            value = float(row["tokens"]) / hours
        else:  # volume_ratio: window count vs the mean count of equally long baseline windows
            base_n = int(row["base_n"])
            if base_n == 0:
                continue  # no baseline yet: nothing to compare with
            value = n / (base_n * rule.window / rule.baseline)
        out.append(Measurement(labels, value, n))
    return out
