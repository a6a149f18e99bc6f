"""Foundation: migrations, the storage module over the real ClickHouse engine (chdb), CLI SQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from orbitwatch.storage import ReadOnlyQueryError, Storage, StorageError, migrate
from orbitwatch.storage.migrate import available

CONTRACT = {
    "spans": ["timestamp", "trace_id", "span_id", "parent_span_id", "span_name", "span_kind", "service_name",
              "resource_attributes", "span_attributes", "duration_ns", "status_code", "status_message",
              "events.timestamp", "events.name", "events.attributes", "links.trace_id", "links.span_id",
              "project", "span_type", "model", "provider", "input", "output", "input_tokens", "output_tokens",
              "cost", "session_id", "user_id"],
    "experiments": ["experiment_id", "project", "name", "status", "started_at", "ended_at"],
    "experiment_params": ["experiment_id", "name", "value"],
    "experiment_metrics": ["experiment_id", "name", "step", "epoch", "value", "timestamp"],
    "predictions": ["model", "model_version", "prediction_id", "timestamp", "numeric_features",
                    "categorical_features", "prediction", "label"],
    "drift_results": ["model", "model_version", "feature", "metric", "value", "threshold", "drifted",
                      "window_start", "window_end"],
    "eval_scores": ["entity_type", "entity_id", "trace_id", "name", "value", "reason", "source", "timestamp"],
    "alerts": ["rule", "fingerprint", "status", "labels", "annotations", "starts_at", "ends_at"],
    "logs": ["timestamp", "trace_id", "span_id", "severity_text", "body", "log_attributes"],
    "metrics_gauge": ["metric_name", "attributes", "time_unix", "value"],
    "metrics_sum": ["metric_name", "value", "is_monotonic"],
    "metrics_histogram": ["metric_name", "bucket_counts", "explicit_bounds"],
    "metrics_exponential_histogram": ["metric_name", "scale", "positive_bucket_counts"],
    "data_quality": ["model", "feature", "metric", "value", "window_start"],
    "model_registry": ["model", "version", "stage"],
}


def test_migrations_apply_twice_and_create_every_contract_table(clickhouse_dsn):
    st = Storage(clickhouse_dsn)
    try:
        first = migrate(st)
        assert [m.version for m in first] == [m.version for m in available()]
        assert migrate(st) == []  # second run is a no-op
        for table, columns in CONTRACT.items():
            _, rows = st.query("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                               "AND table = {t:String}", {"t": table})
            types = dict(rows)
            missing = [c for c in columns if c not in types]
            assert not missing, f"{table} lacks {missing}"
        types = dict(st.query("SELECT name, type FROM system.columns WHERE table = 'spans'")[1])
        assert types["timestamp"] == "DateTime64(9)"
        assert types["span_attributes"] == "Map(LowCardinality(String), String)"
        assert types["drifted" if False else "duration_ns"] == "UInt64"
        assert dict(st.query("SELECT name, type FROM system.columns WHERE table = 'drift_results'")[1])[
            "drifted"] == "Bool"
        versions = st.query("SELECT version FROM schema_migrations FINAL ORDER BY version")[1]
        assert [v[0] for v in versions] == [m.version for m in available()]
    finally:
        st.close()


def test_cluster_variant_renders_replicated_on_cluster():
    mig = available()[0]
    stmts = mig.statements(cluster="prod", ttl_days=7)
    assert all("ON CLUSTER prod" in s for s in stmts if s.startswith("CREATE"))
    assert "ReplicatedReplacingMergeTree" in stmts[0]
    assert "toIntervalDay(7)" in stmts[0]
    local = mig.statements()
    assert "ON CLUSTER" not in local[0] and "ENGINE = ReplacingMergeTree" in local[0]


def test_spans_round_trip_with_maps_and_nanoseconds(storage):
    ts = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=timezone.utc)
    cols = ["timestamp", "trace_id", "span_id", "span_name", "service_name", "resource_attributes",
            "span_attributes", "duration_ns", "events.timestamp", "events.name", "events.attributes",
            "project", "span_type", "model", "input_tokens", "output_tokens", "cost"]
    rows = [[ts + timedelta(seconds=i), f"{i:032x}", f"{i:016x}", "chat", "svc",
             {"service.name": "svc"}, {"gen_ai.request.model": "gpt-4o", "k": str(i)}, 1_500_000 + i,
             [ts], ["token"], [{"n": "1"}], "p", "llm", "gpt-4o", 10, 20, 0.001] for i in range(1000)]
    assert storage.insert_rows("spans", cols, rows) == 1000
    # nanosecond precision survives a string round trip in ClickHouse itself
    storage.command("INSERT INTO spans (timestamp, trace_id, span_id, span_name) VALUES "
                    "(toDateTime64('2026-11-26 12:00:00.123456789', 9, 'UTC'), 'ns', '01', 'n')")
    assert storage.scalar("SELECT toString(timestamp) FROM spans WHERE trace_id = 'ns'").endswith(".123456789")
    got = storage.query_dicts("SELECT * FROM spans FINAL WHERE trace_id = {t:String}", {"t": f"{7:032x}"})
    assert len(got) == 1
    row = got[0]
    assert row["span_attributes"] == {"gen_ai.request.model": "gpt-4o", "k": "7"}
    assert row["resource_attributes"] == {"service.name": "svc"}
    assert row["duration_ns"] == 1_500_007 and row["model"] == "gpt-4o" and row["span_type"] == "llm"
    assert row["events.name"] == ["token"]
    assert row["timestamp"].replace(tzinfo=timezone.utc) == ts + timedelta(seconds=7)
    # the trace-id lookup table is fed by its materialized view
    assert storage.scalar("SELECT count() FROM spans_trace_id_ts WHERE trace_id = {t:String}",
                          {"t": f"{7:032x}"}) == 1
    # the per-minute rollup is fed too
    assert storage.scalar("SELECT countMerge(spans) FROM spans_rollup_1m WHERE project = 'p'") == 1000


def test_replayed_batch_is_invisible_to_queries(storage):
    cols = ["timestamp", "trace_id", "span_id", "span_name"]
    now = datetime.now(timezone.utc)
    rows = [[now, "t1", f"{i:016x}", "s"] for i in range(10)]
    storage.insert_rows("spans", cols, rows, dedup_token="otlp.traces/0/0-9")
    storage.insert_rows("spans", cols, rows, dedup_token="otlp.traces/0/0-9")  # same batch: dropped at insert
    assert storage.scalar("SELECT count() FROM spans") == 10
    storage.insert_rows("spans", cols, rows[:5], dedup_token="otlp.traces/0/0-4")  # other boundaries: merged away
    assert storage.scalar("SELECT count() FROM spans FINAL") == 10


def test_columnar_insert(storage):
    n = 100
    now = datetime.now(timezone.utc)
    data = [["e1"] * n, ["loss"] * n, list(range(n)), [0] * n, [1.0 / (i + 1) for i in range(n)], [now] * n,
            list(range(n))]
    storage.insert_columns("experiment_metrics", ["experiment_id", "name", "step", "epoch", "value",
                                                  "timestamp", "seq"], data)
    assert storage.scalar("SELECT count() FROM experiment_metrics FINAL WHERE experiment_id='e1'") == n


def test_read_only_guard(storage):
    cols, rows = storage.query_read_only("SELECT 1 AS one")
    assert cols == ["one"] and rows == [(1,)]
    assert storage.query_read_only("WITH 2 AS x SELECT x")[1] == [(2,)]
    assert storage.query_read_only("SHOW TABLES")[1]
    for bad in ["DROP TABLE spans", "INSERT INTO spans (trace_id) VALUES ('x')", "ALTER TABLE spans DELETE WHERE 1",
                "SELECT 1; DROP TABLE spans", "TRUNCATE TABLE spans", "SET readonly = 0", "OPTIMIZE TABLE spans",
                "CREATE TABLE x (a Int8) ENGINE = Memory", "SYSTEM FLUSH LOGS", "not sql at all"]:
        with pytest.raises(ReadOnlyQueryError):
            storage.query_read_only(bad)
    assert storage.scalar("SELECT count() FROM system.tables WHERE name = 'spans'") == 1
    # the guard did not leave the embedded session read-only
    storage.command("CREATE TABLE IF NOT EXISTS still_writable (a Int8) ENGINE = Memory")


def test_bad_dsn_is_a_clear_error():
    for dsn, needle in [("foo://x", "expected chdb"), ("http://", "no host"), ("http://h:notaport/db", "bad port")]:
        with pytest.raises(StorageError, match=needle):
            Storage(dsn)


def test_unreachable_server_is_a_clear_error():
    from tests.conftest import free_port
    with pytest.raises(StorageError, match="cannot connect to ClickHouse"):
        Storage(f"http://default:secret@127.0.0.1:{free_port()}/default")


def test_replayed_logs_are_invisible_under_final(storage):
    cols = ["timestamp", "trace_id", "span_id", "service_name", "severity_text", "body"]
    now = datetime.now(timezone.utc)
    rows = [[now + timedelta(microseconds=i), "t", "s", "svc", "INFO", f"line {i}"] for i in range(20)]
    rows.append([now, "t", "s", "svc", "INFO", "same instant, other body"])
    storage.insert_rows("logs", cols, rows)
    storage.insert_rows("logs", cols, rows[5:])  # a replay with other batch boundaries
    assert storage.scalar("SELECT count() FROM logs FINAL") == 21
