"""Offline evaluation: datasets (versioned), evaluate(), stored runs and their comparison — against
chdb directly (server side) and through the real HTTP API (what an SDK user's script does)."""
from __future__ import annotations

import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient

import orbitwatch
from orbitwatch.api.app import create_app
from orbitwatch.errors import UserError

CTX = ["The Danube rises in the Black Forest in Germany and flows about 2,850 kilometres to the Black Sea.",
       "Vienna, Budapest and Belgrade lie on the Danube."]
ITEMS = [
    {"input": {"question": "Where does the Danube end?"}, "expected_output": "It ends in the Black Sea.",
     "context": CTX},
    {"input": {"question": "How long is the Danube?"}, "expected_output": "About 2,850 kilometres.",
     "context": CTX},
    {"input": {"question": "Where does the Danube rise?"}, "expected_output": "In the Black Forest in Germany.",
     "context": CTX},
]
GOOD = {"Where does the Danube end?": "The Danube ends in the Black Sea.",
        "How long is the Danube?": "It flows about 2,850 kilometres.",
        "Where does the Danube rise?": "It rises in the Black Forest in Germany."}
BAD = {"Where does the Danube end?": "The Danube ends in the Caspian Sea near Baku.",
       "How long is the Danube?": "It flows about 4,100 kilometres.",
       "Where does the Danube rise?": "It rises in the Alps in Switzerland."}


def test_datasets_are_versioned_and_idempotent(storage):
    ds = orbitwatch.get_or_create_dataset("danube", ITEMS[:2], project="geo", storage=storage)
    assert ds.version == 1 and ds.info["item_count"] == 2
    ds.insert(ITEMS)  # two already there: only one new item
    assert ds.version == 2 and ds.info["item_count"] == 3
    ds.insert(ITEMS)  # nothing new: version unchanged
    assert ds.version == 2
    first = ds.items()[0]
    ds.delete([first["id"]])
    assert ds.version == 3 and len(ds.items()) == 2
    assert len(ds.items(version=2)) == 3 and len(ds.items(version=1)) == 2  # old versions readable
    again = orbitwatch.get_dataset("danube", project="geo", storage=storage)
    assert again.version == 3
    with pytest.raises(UserError, match="no dataset"):
        orbitwatch.get_dataset("nope", project="geo", storage=storage)
    with pytest.raises(UserError, match="needs 'input'"):
        ds.insert([{"question": "no input key"}])


def test_evaluate_runs_scores_records_and_compares(storage):
    ds = orbitwatch.get_or_create_dataset("danube", ITEMS, project="geo", storage=storage)
    calls = []

    def good(item):
        calls.append(threading.current_thread().name)
        return GOOD[item["input"]["question"]]

    def bad(item):
        if "rise" in item["input"]["question"]:
            raise RuntimeError("model timeout")
        return {"output": BAD[item["input"]["question"]], "context": item["context"]}

    metrics = ["hallucination", "answer_relevance", "context_recall", "rouge_l"]
    r1 = orbitwatch.evaluate(ds, good, metrics, "baseline", {"model": "m1"}, workers=3, trace=False, storage=storage)
    r2 = orbitwatch.evaluate("danube", bad, metrics, "candidate", {"model": "m2"}, project="geo", trace=False,
                             storage=storage)
    assert len(calls) == 3 and all(n.startswith("orbitwatch-eval") for n in calls)
    assert r1.dataset_version == 1 and r1.errors == 0 and r2.errors == 1
    assert r1.scores["hallucination"] == 0.0 and r2.scores["hallucination"] == 1.0
    assert r1.scores["rouge_l"] > r2.scores["rouge_l"]
    failed = next(i for i in r2.items if i.error)
    assert failed.error == "RuntimeError: model timeout" and failed.scores == {}

    stored = orbitwatch.evaluation.get_run(r2.run_id, storage=storage)
    assert stored["name"] == "candidate" and stored["config"] == {"model": "m2"}
    assert stored["item_count"] == 3 and stored["error_count"] == 1 and stored["dataset_version"] == 1
    wrong = next(i for i in stored["items"] if i["output"] and "Caspian" in str(i["output"]))
    assert wrong["scores"]["hallucination"] == 1.0 and "caspian" in wrong["reasons"]["hallucination"].lower()

    cmp = orbitwatch.compare_runs([r1.run_id, r2.run_id], storage=storage)
    assert cmp["baseline"] == r1.run_id
    assert cmp["metrics"]["hallucination"]["delta_vs_baseline"][r2.run_id] == pytest.approx(1.0)
    assert len(cmp["items"]) == 3 and all(set(i["runs"]) == {r1.run_id, r2.run_id} for i in cmp["items"])


def test_evaluate_on_a_plain_list_and_bad_metric(storage):
    res = orbitwatch.evaluate([{"input": "2+2?", "expected_output": "4"}], lambda item: "4",
                              ["equals", "levenshtein_ratio"], trace=False, storage=storage)
    assert res.scores == {"equals": 1.0, "levenshtein_ratio": 1.0} and res.dataset == ""
    with pytest.raises(UserError, match="unknown metric"):
        orbitwatch.evaluate([{"input": "x"}], lambda item: "y", ["bogus"], trace=False, storage=storage)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api_url(storage):
    import uvicorn
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(storage), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(5)


def test_evaluate_over_http_api(api_url, monkeypatch):
    monkeypatch.setenv("ORBITWATCH_API_URL", api_url)
    ds = orbitwatch.get_or_create_dataset("danube-http", ITEMS, project="geo")
    assert ds.version == 1 and len(ds.items()) == 3
    r1 = orbitwatch.evaluate(ds, lambda it: GOOD[it["input"]["question"]], ["hallucination"], "a", trace=False)
    r2 = orbitwatch.evaluate(ds, lambda it: BAD[it["input"]["question"]], ["hallucination"], "b", trace=False)
    cmp = orbitwatch.compare_runs([r1.run_id, r2.run_id])
    assert cmp["metrics"]["hallucination"]["runs"] == {r1.run_id: 0.0, r2.run_id: 1.0}
    with pytest.raises(UserError, match="HTTP 404"):
        orbitwatch.get_dataset("missing", project="geo")
    monkeypatch.setenv("ORBITWATCH_API_URL", "http://127.0.0.1:9")
    with pytest.raises(UserError, match="cannot reach"):
        orbitwatch.get_dataset("x", project="geo")


def test_feedback_and_comments_api(storage):
    client = TestClient(create_app(storage))
    trace = "ab" * 16
    for annotator, value in (("alice", 1.0), ("bob", 0.0), ("alice", 0.5)):  # alice re-scores: replaced
        r = client.post("/api/v1/feedback", json={"entity_type": "trace", "entity_id": trace, "project": "p",
                                                 "name": "helpful", "value": value, "annotator": annotator,
                                                 "reason": "checked by hand", "category": "quality"})
        assert r.status_code == 201, r.text
    r = client.post("/api/v1/feedback", json={"scores": [{"entity_type": "span", "entity_id": "s1", "trace_id": trace,
                                                          "project": "p", "name": "correct", "value": 1}]})
    assert r.json() == {"written": 1}
    got = client.get("/api/v1/feedback", params={"trace_id": trace}).json()["items"]
    helpful = {i["annotator"]: i["value"] for i in got if i["name"] == "helpful"}
    assert helpful == {"alice": 0.5, "bob": 0.0}
    assert all(i["source"] == "ui" for i in got) and len(got) == 3
    assert client.post("/api/v1/feedback", json={"entity_id": trace, "name": "x", "value": "nan"}).status_code == 422
    assert client.post("/api/v1/feedback", json={"entity_id": trace, "name": "x", "value": 1,
                                                 "entity_type": "nope"}).status_code == 422
    assert client.get("/api/v1/feedback").status_code == 400
    gone = client.delete("/api/v1/feedback", params={"entity_id": trace, "name": "helpful", "annotator": "bob",
                                                     "project": "p"})
    assert gone.json() == {"deleted": True}
    left = client.get("/api/v1/feedback", params={"trace_id": trace, "source": "ui"}).json()["items"]
    assert sorted((i["name"], i["annotator"]) for i in left) == [("correct", ""), ("helpful", "alice")]
    # the trace view of the query API shows the same scores
    c = client.post("/api/v1/comments", json={"entity_type": "span", "entity_id": "s1", "trace_id": trace,
                                              "project": "p", "text": "wrong citation", "author": "bob"})
    assert c.status_code == 201
    client.post("/api/v1/comments", json={"entity_id": trace, "project": "p", "text": "ok overall", "author": "alice"})
    listed = client.get("/api/v1/comments", params={"trace_id": trace}).json()["items"]
    assert [x["text"] for x in listed] == ["wrong citation", "ok overall"]
    assert client.delete(f"/api/v1/comments/{c.json()['comment_id']}").json() == {"deleted": True}
    assert len(client.get("/api/v1/comments", params={"trace_id": trace}).json()["items"]) == 1
    assert client.delete("/api/v1/comments/nope").status_code == 404
    # datasets over the API
    assert client.post("/api/v1/datasets", json={"name": "d", "project": "p"}).json()["version"] == 0
    v = client.post("/api/v1/datasets/d/items", json={"project": "p", "items": ITEMS}).json()
    assert v["version"] == 1 and v["item_count"] == 3
    assert client.get("/api/v1/datasets/d", params={"project": "p"}).json()["versions"][0]["added"] == 3
    assert client.get("/api/v1/datasets/d/items", params={"project": "p", "version": 7}).status_code == 404
    assert client.get("/api/v1/eval-runs/compare", params={"run_ids": "onlyone"}).status_code == 400
