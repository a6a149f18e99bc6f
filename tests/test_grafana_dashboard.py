"""The shipped Grafana dashboard's SQL runs on our schema (real ClickHouse engine, macros expanded
the way the grafana-clickhouse-datasource plugin expands them) and returns the rows it should."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy/grafana/dashboards/orbitwatch-overview.json"


def expand(sql: str, variables: dict[str, str]) -> str:
    """$__timeFilter(col) -> col within the last day; ${var:singlequote} / ${var} -> values."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= now() - INTERVAL 1 DAY AND \1 <= now() + INTERVAL 1 HOUR", sql)
    for name, value in variables.items():
        sql = sql.replace(f"${{{name}:singlequote}}", f"'{value}'").replace(f"${{{name}}}", value)
    assert "$" not in sql, sql
    return sql


def test_every_panel_and_variable_query_runs_and_sees_the_data(storage):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    storage.insert_rows("spans", ["timestamp", "trace_id", "span_id", "span_name", "service_name", "project", "model",
                                  "span_type", "duration_ns", "status_code", "input_tokens", "output_tokens", "cost"],
                        [[now - timedelta(minutes=i % 5), f"{i:032x}", f"{i:016x}", "chat", "bot", "shop", "gpt-4o",
                          "llm", 1_000_000 * (i + 1), "STATUS_CODE_ERROR" if i % 10 == 0 else "STATUS_CODE_OK",
                          100, 20, 0.001] for i in range(50)])
    storage.insert_rows("eval_scores", ["project", "entity_type", "entity_id", "trace_id", "name", "value", "source",
                                        "timestamp"],
                        [["shop", "span", f"{i:016x}", f"{i:032x}", "hallucination", i / 10, "online", now]
                         for i in range(10)])
    storage.insert_rows("drift_results", ["project", "model", "model_version", "feature", "metric", "value",
                                          "threshold", "drifted", "is_primary", "is_final", "window_start",
                                          "window_end", "computed_at"],
                        [["shop", "churn", "v1", "amount", "wasserstein_norm", 0.9, 0.1, True, True, True,
                          now - timedelta(hours=1), now, now],
                         ["shop", "churn", "v1", "__dataset__", "drift_share", 0.5, 0.5, True, True, True,
                          now - timedelta(hours=1), now, now]])
    storage.insert_rows("alerts", ["rule", "fingerprint", "status", "labels", "starts_at", "transition_at"],
                        [["FeatureDrift", "fp1", "firing", {"feature": "amount"}, now, now]])
    storage.insert_rows("experiments", ["experiment_id", "project", "name", "status", "started_at", "updated_at"],
                        [["e1", "shop", "run", "finished", now, now]])
    storage.insert_rows("experiment_metrics", ["experiment_id", "name", "step", "value", "timestamp", "seq"],
                        [["e1", "loss", s, 1 / (s + 1), now, s] for s in range(10)])

    dash = json.loads(DASHBOARD.read_text())
    variables = {"project": "shop", "experiment": "e1", "metric": "loss"}
    for var in dash["templating"]["list"]:
        _, rows = storage.query(expand(var["query"], variables))
        assert rows, f"variable {var['name']} found no values"
    counts = {}
    for p in dash["panels"]:
        for target in p["targets"]:
            cols, rows = storage.query(expand(target["rawSql"], variables))
            counts[p["title"]] = rows
            assert rows, f"panel {p['title']!r} returned no rows"
    assert sum(r[2] for r in counts["Spans per minute by project"]) == 50
    # errors are spans 0, 10, ..., 40: all in the minute of `now`, which holds 10 spans
    assert sorted(r[2] for r in counts["Error rate by service"]) == [0, 0, 0, 0, 0.5]
    hours = counts["Tokens and cost per hour"]  # the 5 minutes may straddle an hour boundary
    assert (sum(r[1] for r in hours), sum(r[2] for r in hours)) == (5000, 1000)
    assert counts["Drifted features (final windows)"][0][2] == "amount"
    assert [r[2] for r in counts["Experiment metric (pick experiment and metric)"]][0] == 1.0
    assert counts["Alerts: latest state per fingerprint"][0][1] == "firing"
