"""The query API over a real (embedded) ClickHouse: filters, trees, pagination, auth and scoping,
experiments, drift, alerts and the read-only SQL endpoint."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from orbitwatch.api.app import create_app
from orbitwatch.ingest.auth import Auth, Principal

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
SPAN_COLS = ("timestamp", "trace_id", "span_id", "parent_span_id", "span_name", "service_name", "duration_ns",
             "status_code", "status_message", "tenant", "project", "span_type", "model", "provider", "input",
             "output", "input_tokens", "output_tokens", "cost")
TA, TB, TC = "a" * 32, "b" * 32, "c" * 32


def span(trace, sid, parent, name, at_ms, dur_ms, *, tenant="t1", project="p1", span_type="general", model="",
         status="STATUS_CODE_UNSET", tokens=(0, 0), cost=0.0, output=""):
    return [T0 + timedelta(milliseconds=at_ms), trace, sid, parent, name, "svc", int(dur_ms * 1e6), status,
            "boom" if status == "STATUS_CODE_ERROR" else "", tenant, project, span_type, model,
            "openai" if model else "", '{"q": "x"}', output, tokens[0], tokens[1], cost]


@pytest.fixture
def seeded(storage):
    return seed(storage)


def seed(storage):
    """Three traces (two tenants), scores, two experiments, drift windows and alert transitions."""
    storage.insert_rows("spans", SPAN_COLS, [
        span(TA, "a1", "", "rag", 0, 900, span_type="chain"),
        span(TA, "a2", "a1", "retrieve", 10, 100, span_type="retriever"),
        span(TA, "a3", "a1", "generate", 120, 700, span_type="llm", model="gpt-4o", tokens=(100, 20), cost=0.01,
             output="Paris"),
        span(TB, "b1", "", "tool-call", 60_000, 50, span_type="tool", status="STATUS_CODE_ERROR"),
        span(TC, "c1", "", "other", 120_000, 10, tenant="t2", project="p2", span_type="llm", model="claude"),
    ])
    storage.insert_rows("eval_scores", ("tenant", "project", "entity_type", "entity_id", "trace_id", "name", "value",
                                        "reason", "source"),
                        [["t1", "p1", "span", "a3", TA, "hallucination", 0.8, "invented", "online"],
                         ["t1", "p1", "trace", TA, TA, "user_feedback", 1.0, "", "sdk"]])
    storage.insert_rows("experiments", ("experiment_id", "tenant", "project", "name", "status", "started_at",
                                        "updated_at"),
                        [["e" * 32, "t1", "p1", "run-fast", "finished", T0, T0],
                         ["f" * 32, "t1", "p1", "run-slow", "running", T0 + timedelta(seconds=1), T0]])
    storage.insert_rows("experiment_params", ("experiment_id", "name", "value", "timestamp"),
                        [["e" * 32, "lr", "0.01", T0], ["f" * 32, "lr", "0.001", T0], ["e" * 32, "bs", "32", T0],
                         ["f" * 32, "bs", "32", T0]])
    storage.insert_rows("experiment_metrics", ("experiment_id", "name", "step", "epoch", "value", "timestamp", "seq"),
                        [["e" * 32, "loss", s, s // 5, 1.0 / (s + 1), T0 + timedelta(seconds=s), s] for s in range(20)]
                        + [["f" * 32, "loss", s, s // 5, 2.0 / (s + 1), T0 + timedelta(seconds=s), s]
                           for s in range(10)])
    drift_cols = ("tenant", "project", "model", "model_version", "feature", "metric", "value", "threshold", "drifted",
                  "window_start", "window_end", "is_final", "is_primary", "computed_at")
    rows = []
    for w in range(4):
        ws = T0 + timedelta(minutes=10 * w)
        rows.append(["t1", "p1", "m", "v1", "amount", "psi", 0.05 + 0.2 * (w >= 2), 0.1, w >= 2, ws,
                     ws + timedelta(minutes=10), True, True, T0])
        rows.append(["t1", "p1", "m", "v1", "amount", "ks", 0.5, 0.05, True, ws, ws + timedelta(minutes=10), True, False,
                     T0])
        rows.append(["t1", "p1", "m", "v1", "age", "psi", 0.01, 0.1, False, ws, ws + timedelta(minutes=10), True, True,
                     T0])
    storage.insert_rows("drift_results", drift_cols, rows)
    storage.insert_rows("alerts", ("rule", "fingerprint", "status", "labels", "annotations", "value", "starts_at",
                                   "transition_at"),
                        [["FeatureDrift", "fp1", "firing", {"tenant": "t1", "project": "p1", "feature": "amount"},
                          {"summary": "drifted"}, 0.25, T0, T0],
                         ["FeatureDrift", "fp1", "resolved", {"tenant": "t1", "project": "p1", "feature": "amount"},
                          {"summary": "drifted"}, 0.05, T0, T0 + timedelta(minutes=5)],
                         ["HighHallucinationRate", "fp2", "firing", {"project": "p1"}, {}, 0.7, T0,
                          T0 + timedelta(minutes=1)],
                         ["HighHallucinationRate", "fp3", "firing", {"project": "p9"}, {}, 0.9, T0,
                          T0 + timedelta(minutes=1)]])
    return storage


@pytest.fixture
def client(seeded):
    return TestClient(create_app(seeded))


def test_openapi_and_health(client):
    assert client.get("/healthz").text == "ok"
    assert client.get("/readyz").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/v1/traces", "/api/v1/traces/{trace_id}", "/api/v1/experiments/{experiment_id}/metrics",
              "/api/v1/experiments/compare", "/api/v1/drift/{model}", "/api/v1/scores", "/api/v1/alerts",
              "/api/v1/sql"):
        assert p in paths
    assert client.get("/docs").status_code == 200
    assert client.get("/api/v1/status").json()["tables"]["spans"] == 5


def test_trace_list_filters_and_pagination(client):
    ids = lambda r: [t["trace_id"] for t in r.json()["items"]]  # noqa: E731
    assert ids(client.get("/api/v1/traces")) == [TC, TB, TA]  # newest first
    assert ids(client.get("/api/v1/traces", params={"project": "p1"})) == [TB, TA]
    assert ids(client.get("/api/v1/traces", params={"span_type": "llm", "project": "p1"})) == [TA]
    assert ids(client.get("/api/v1/traces", params={"model": "claude"})) == [TC]
    assert ids(client.get("/api/v1/traces", params={"status": "error"})) == [TB]
    assert ids(client.get("/api/v1/traces", params={"min_latency_ms": 500})) == [TA]
    assert ids(client.get("/api/v1/traces", params={"has_score": "hallucination"})) == [TA]
    assert ids(client.get("/api/v1/traces", params={"since": (T0 + timedelta(seconds=30)).isoformat()})) == [TC, TB]
    first = client.get("/api/v1/traces", params={"limit": 2}).json()
    assert first["next_offset"] == 2 and len(first["items"]) == 2
    rest = client.get("/api/v1/traces", params={"limit": 2, "offset": 2}).json()
    assert ids_of(rest) == [TA] and rest["next_offset"] is None
    row = next(t for t in client.get("/api/v1/traces").json()["items"] if t["trace_id"] == TA)
    assert row["spans"] == 3 and row["root_name"] == "rag" and row["duration_ms"] == pytest.approx(900)
    assert row["input_tokens"] == 100 and row["models"] == ["gpt-4o"] and row["status"] == "ok"
    assert client.get("/api/v1/traces", params={"status": "bad"}).status_code == 422
    assert client.get("/api/v1/traces", params={"since": "yesterday-ish"}).status_code == 400


def ids_of(page):
    return [t["trace_id"] for t in page["items"]]


def test_trace_tree_with_scores(client):
    tree = client.get(f"/api/v1/traces/{TA}").json()
    assert tree["span_count"] == 3 and tree["cost"] == pytest.approx(0.01)
    assert [s["name"] for s in tree["scores"]] == ["user_feedback"]
    (root,) = tree["spans"]
    assert root["span_name"] == "rag" and [c["span_name"] for c in root["children"]] == ["retrieve", "generate"]
    gen = root["children"][1]
    assert gen["model"] == "gpt-4o" and gen["input_tokens"] == 100 and gen["output"] == "Paris"
    assert [(s["name"], s["value"], s["reason"]) for s in gen["scores"]] == [("hallucination", 0.8, "invented")]
    assert client.get(f"/api/v1/traces/{'d' * 32}").status_code == 404
    assert client.get("/api/v1/traces/not-hex!").status_code == 400


def test_experiments_history_compare(client):
    page = client.get("/api/v1/experiments", params={"search": "fast"}).json()
    assert [e["name"] for e in page["items"]] == ["run-fast"]
    exp = client.get(f"/api/v1/experiments/{'e' * 8}").json()  # unique id prefix
    assert exp["params"] == {"bs": "32", "lr": "0.01"}
    (loss,) = exp["metrics"]
    assert loss["points"] == 20 and loss["last"] == pytest.approx(1 / 20) and loss["last_step"] == 19
    hist = client.get(f"/api/v1/experiments/{'e' * 32}/metrics", params={"name": "loss", "x": "epoch",
                                                                        "limit": 15}).json()
    pts = hist["series"]["loss"]
    assert len(pts) == 15 and hist["next_offset"] == 15 and [p["step"] for p in pts] == list(range(15))
    cmp = client.get("/api/v1/experiments/compare", params={"ids": ["e" * 32, "f" * 32]}).json()
    assert cmp["params_differ"] == ["lr"] and cmp["metrics"]["loss"]["f" * 32]["points"] == 10
    assert client.get("/api/v1/experiments/compare", params={"ids": ["e" * 32]}).status_code == 400
    assert client.get("/api/v1/experiments/nope").status_code == 404


def test_drift_scores_alerts(client):
    tl = client.get("/api/v1/drift/m", params={"final_only": True}).json()
    assert tl["drifted_features"] == ["amount"]  # ks on age/amount is not the deciding test
    amount = next(s for s in tl["summary"] if s["feature"] == "amount" and s["primary"])
    assert amount["windows"] == 4 and amount["drifted_windows"] == 2 and amount["last_drifted"]
    assert client.get("/api/v1/drift", params={}).json()["items"][0]["drifted_features"] == 1
    assert client.get("/api/v1/drift/m", params={"feature": "age"}).json()["drifted_features"] == []
    sc = client.get("/api/v1/scores", params={"name": "hallucination"}).json()
    assert [s["entity_id"] for s in sc["items"]] == ["a3"] and sc["summary"][0]["mean"] == pytest.approx(0.8)
    current = client.get("/api/v1/alerts").json()["items"]
    assert {(a["fingerprint"], a["status"]) for a in current} == {("fp1", "resolved"), ("fp2", "firing"),
                                                                   ("fp3", "firing")}
    assert sorted(a["fingerprint"] for a in client.get("/api/v1/alerts", params={"status": "firing"}).json()["items"]) \
        == ["fp2", "fp3"]
    assert len(client.get("/api/v1/alerts", params={"history": True}).json()["items"]) == 4


def test_sql_endpoint_read_only(client):
    r = client.post("/api/v1/sql", json={"query": "SELECT span_name FROM spans ORDER BY span_name", "max_rows": 2})
    assert r.status_code == 200 and r.json() == {"columns": ["span_name"], "rows": [["generate"], ["other"]],
                                                 "truncated": True}
    r = client.post("/api/v1/sql", json={"query": "DROP TABLE spans"})
    assert r.status_code == 400 and "read-only" in r.json()["detail"]
    assert client.post("/api/v1/sql", json={"query": "SELEC 1"}).status_code == 400
    assert client.get("/api/v1/status").json()["tables"]["spans"] == 5


def test_keys_scope_tenant_and_project(seeded, monkeypatch):
    auth = Auth({"key-tenant1": Principal("t1"), "key-p2-only": Principal("t2", "p2")})
    c = TestClient(create_app(seeded, auth))
    assert c.get("/api/v1/traces").status_code == 401
    assert c.get("/api/v1/traces", headers={"authorization": "Bearer wrong-key"}).status_code == 401
    t1 = {"authorization": "Bearer key-tenant1"}
    assert ids_of(c.get("/api/v1/traces", headers=t1).json()) == [TB, TA]
    assert c.get(f"/api/v1/traces/{TC}", headers=t1).status_code == 404  # other tenant's trace
    p2 = {"x-api-key": "key-p2-only"}
    assert ids_of(c.get("/api/v1/traces", headers=p2).json()) == [TC]
    assert c.get("/api/v1/traces", headers=p2, params={"project": "p1"}).status_code == 404
    assert c.get("/api/v1/experiments", headers=p2).json()["items"] == []
    # fp1 by its tenant label, fp2 by its project p1 (t1's drift results); not fp3 of an unknown project
    assert sorted(a["fingerprint"] for a in c.get("/api/v1/alerts", headers=t1).json()["items"]) == ["fp1", "fp2"]
    assert c.get("/api/v1/alerts", headers=p2).json()["items"] == []
    # raw SQL cannot be scoped: only for tenants listed in ORBITWATCH_SQL_TENANTS
    assert c.post("/api/v1/sql", json={"query": "SELECT 1"}, headers=t1).status_code == 403
    monkeypatch.setenv("ORBITWATCH_SQL_TENANTS", "t1")
    assert c.post("/api/v1/sql", json={"query": "SELECT 1"}, headers=t1).json()["rows"] == [[1]]
    assert c.post("/api/v1/sql", json={"query": "SELECT 1"}, headers=p2).status_code == 403
