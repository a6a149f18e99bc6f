"""The alert routes of the query API, over a real embedded ClickHouse and a real processor."""
from __future__ import annotations

from fastapi.testclient import TestClient

from orbitwatch.api.app import create_app

from tests.test_alerts import Clock, drift, make
from tests.webhook_receiver import WebhookReceiver

GOOD = "defaults: false\nrules:\n  - {name: AgeDrift, kind: drift, feature: age, severity: critical}\n"


def test_validate_upload_apply_and_list(storage):
    client = TestClient(create_app(storage))
    bad = client.post("/api/v1/alerts/rules/validate", content="rules:\n  - {name: A, kind: drift, op: '=>'}\n",
                      headers={"content-type": "application/yaml"})
    assert bad.status_code == 422
    (err,) = bad.json()["errors"]
    assert err["field"] == "rules[0].op" and err["line"] == 2
    ok = client.post("/api/v1/alerts/rules/validate", json={"yaml": GOOD})
    assert ok.status_code == 200 and ok.json()["rules"] == ["AgeDrift"]
    assert client.put("/api/v1/alerts/rules", content="rules: [{kind: drift}]").status_code == 422

    with WebhookReceiver() as hook:
        clock = Clock()
        proc = make(storage, webhook=hook.url, clock=clock)
        assert "FeatureDrift" in proc.config.rules
        put = client.put("/api/v1/alerts/rules", content=GOOD)
        assert put.status_code == 200, put.text
        clock.t += 6
        proc.tick(clock.t)  # the processor polls the uploaded document
        assert set(proc.config.rules) == {"AgeDrift"}
        shown = client.get("/api/v1/alerts/rules").json()
        assert shown["source"].startswith("uploaded v") and [r["name"] for r in shown["rules"]] == ["AgeDrift"]
        assert shown["receivers"] == [] and "url" not in str(shown["receivers"])

        proc.handle([drift(0, True)])
        hook.wait_for(1)
        assert proc.outbox.wait_idle(5)
        active = client.get("/api/v1/alerts/active").json()["items"]
        assert [(a["rule"], a["status"], a["labels"]["severity"]) for a in active] == [("AgeDrift", "firing", "critical")]
        assert client.get("/api/v1/alerts/active", params={"project": "elsewhere"}).json()["items"] == []
        history = client.get("/api/v1/alerts", params={"history": "true"}).json()["items"]
        assert [h["status"] for h in history] == ["firing"]
        sent = client.get("/api/v1/alerts/notifications", params={"include_payload": "true"}).json()["items"]
        assert sent[0]["status"] == "delivered" and sent[0]["payload"]["version"] == "4"

        assert client.delete("/api/v1/alerts/rules").status_code == 200
        clock.t += 6
        proc.tick(clock.t)
        assert "FeatureDrift" in proc.config.rules and "AgeDrift" not in proc.config.rules
        assert client.get("/api/v1/alerts/rules").json()["source"] == "built-in defaults"
        proc.close()
