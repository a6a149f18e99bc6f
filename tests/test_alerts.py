"""Alert processor end to end in one process: records in, real HTTP notifications out (a loopback
receiver records what it got), state and history in a real embedded ClickHouse."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from orbitwatch.config import load_settings
from orbitwatch.processors.alerts import build, effective_config, parse_rules
from orbitwatch.processors.alerts.operator import AlertProcessor
from orbitwatch.processors.alerts.receivers import AM_ALERT_FIELDS, AM_FIELDS, verify_signature
from orbitwatch.processors.base import Message
from orbitwatch.schemas import records as r
from orbitwatch.schemas.envelope import encode

from tests.webhook_receiver import WebhookReceiver

T0 = datetime(2026, 11, 26, 6, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, t: float | None = None) -> None:
        self.t = t if t is not None else time.time()

    def __call__(self) -> float:
        return self.t


def drift(window: int, drifted: bool, feature: str = "age", value: float | None = None, model: str = "churn",
          final: bool = True, project: str = "shop") -> Message:
    rec = r.DriftResult(project=project, model=model, model_version="v3", feature=feature, metric="psi",
                        value=value if value is not None else (0.42 if drifted else 0.03), threshold=0.2,
                        drifted=drifted, window_start=T0 + timedelta(minutes=window),
                        window_end=T0 + timedelta(minutes=window + 1), is_final=final, sample_size=500)
    return Message(topic="orbitwatch.drift", value=encode(rec))


def score(value: float, project: str = "bot", ts: float | None = None) -> Message:
    rec = r.EvalScore(project=project, entity_id=f"s{value}-{time.time_ns()}", name="hallucination", value=value,
                      timestamp=datetime.fromtimestamp(ts or time.time(), timezone.utc))
    return Message(topic="orbitwatch.evals", value=encode(rec))


def make(storage, text: str | None = None, webhook: str = "", clock=None) -> AlertProcessor:
    doc = parse_rules(text) if text else None
    return AlertProcessor(effective_config(webhook, doc), storage, alert_webhook=webhook, base_doc=doc,
                          clock=clock or time.time)


def test_drift_episode_sends_one_firing_and_one_resolved_alertmanager_v4(storage, monkeypatch):
    """Zero config: --alert-webhook alone. Three drifted windows (one replayed), then a clean one."""
    with WebhookReceiver() as hook:
        monkeypatch.delenv("ORBITWATCH_ALERT_RULES", raising=False)
        settings = load_settings(alert_webhook=hook.url, api_url="http://ow.example:8080")
        clock = Clock()
        proc = build(settings, storage)
        proc.clock = clock
        emits = proc.handle([drift(0, True), drift(0, False, feature="income")])
        assert [e.topic for e in emits] == ["orbitwatch.alerts"]
        proc.handle([drift(1, True), drift(1, True)])  # a replayed window counts once
        proc.handle([drift(2, True, value=0.5)])
        clock.t += 1
        proc.tick(clock.t)
        assert len(hook.wait_for(1)) == 1
        proc.handle([drift(3, False)])
        assert proc.tick(clock.t + 2) == []  # group_interval (10 s) not over yet: nothing sent
        assert proc.outbox.wait_idle(5) and len(hook.accepted()) == 1
        proc.tick(clock.t + 11)
        got = hook.wait_for(2)
        assert proc.outbox.wait_idle(5)
        time.sleep(0.2)
        assert len(hook.requests) == 2, [x.json for x in hook.requests]
        firing, resolved = got[0].json, got[1].json
        for payload in (firing, resolved):
            assert set(AM_FIELDS) <= set(payload) and payload["version"] == "4"
            for a in payload["alerts"]:
                assert set(AM_ALERT_FIELDS) <= set(a)
        assert firing["status"] == "firing" and resolved["status"] == "resolved"
        (fa,), (ra,) = firing["alerts"], resolved["alerts"]
        assert fa["labels"] == {"alertname": "FeatureDrift", "project": "shop", "model": "churn",
                                "model_version": "v3", "feature": "age", "metric": "psi", "severity": "warning"}
        assert fa["endsAt"] == "0001-01-01T00:00:00Z" and ra["endsAt"] > ra["startsAt"] == fa["startsAt"]
        assert fa["fingerprint"] == ra["fingerprint"]
        assert "0.42" in fa["annotations"]["description"]
        assert fa["generatorURL"].startswith("http://ow.example:8080/api/v1/alerts")
        assert firing["groupLabels"] == {"alertname": "FeatureDrift", "project": "shop", "model": "churn",
                                         "model_version": "v3"}
        assert firing["receiver"] == "default" and firing["externalURL"] == "http://ow.example:8080"
        assert got[0].headers["x-orbitwatch-notification-id"] != got[1].headers["x-orbitwatch-notification-id"]
        rows = storage.query_dicts("SELECT status, labels['feature'] AS f, value, ends_at FROM alerts FINAL "
                                   "ORDER BY transition_at")
        assert [(x["status"], x["f"]) for x in rows] == [("firing", "age"), ("resolved", "age")]
        assert rows[0]["ends_at"] is None and rows[1]["ends_at"] is not None
        delivered = storage.scalar("SELECT count() FROM alert_outbox FINAL WHERE status = 'delivered'")
        assert delivered == 2
        proc.close()


def test_provisional_results_do_not_fire_by_default(storage):
    with WebhookReceiver() as hook:
        proc = make(storage, webhook=hook.url)
        proc.handle([drift(0, True, final=False)])
        assert proc.active() == []
        proc.handle([drift(0, True, final=True)])
        assert [a.status for a in proc.active()] == ["firing"]
        assert len(hook.wait_for(1)) == 1
        proc.close()


RETRY_RULES = """
defaults: false
route: {receiver: ops, group_by: [alertname], group_interval: 0s}
receivers:
  - {name: ops, type: alertmanager, url: URL, backoff_initial: 50ms, backoff_max: 200ms, max_attempts: 5}
rules:
  - {name: AgeDrift, kind: drift, feature: age}
"""


def test_receiver_500_500_200_gets_the_alert_once(storage):
    with WebhookReceiver(script=[500, 500, 200]) as hook:
        proc = make(storage, RETRY_RULES.replace("URL", hook.url))
        proc.handle([drift(0, True)])
        assert proc.outbox.wait_idle(10)
        assert [x.status for x in hook.requests] == [500, 500, 200]
        ids = {x.notification_id for x in hook.requests}
        assert len(ids) == 1 and len(hook.accepted()) == 1
        row = storage.query_dicts("SELECT status, attempts FROM alert_outbox FINAL")
        assert row == [{"status": "delivered", "attempts": 3}]
        proc.close()


def test_receiver_4xx_is_not_retried_and_recorded_failed(storage, caplog):
    with WebhookReceiver(script=[400]) as hook:
        proc = make(storage, RETRY_RULES.replace("URL", hook.url))
        proc.handle([drift(0, True)])
        assert proc.outbox.wait_idle(10)
        time.sleep(0.3)
        assert [x.status for x in hook.requests] == [400]
        row = storage.query_dicts("SELECT status, attempts, last_http_status, last_error FROM alert_outbox FINAL")
        assert row[0]["status"] == "failed" and row[0]["last_http_status"] == 400
        assert "scripted failure" in row[0]["last_error"]
        assert "failed permanently" in caplog.text
        proc.close()


def test_restart_remembers_firing_alert_and_does_not_renotify(storage):
    with WebhookReceiver() as hook:
        text = RETRY_RULES.replace("URL", hook.url)
        proc = make(storage, text)
        proc.handle([drift(0, True)])
        assert len(hook.wait_for(1)) == 1
        proc.close()
        again = make(storage, text)  # a new process would do exactly this: load state from ClickHouse
        assert [a.status for a in again.active()] == ["firing"]
        again.handle([drift(0, True), drift(1, True)])  # replayed and new drifted windows
        again.tick(time.time())
        assert again.outbox.wait_idle(5)
        assert len(hook.requests) == 1
        again.handle([drift(2, False)])
        got = hook.wait_for(2)
        assert [g.json["status"] for g in got] == ["firing", "resolved"]
        again.close()


HYSTERESIS_RULES = """
defaults: false
route: {receiver: ops, group_interval: 0s}
receivers: [{name: ops, url: URL}]
rules:
  - name: PsiHigh
    kind: drift
    feature: "*"
    metric: psi
    threshold: 0.3
    resolve_threshold: 0.1
    persistence: 2
    severity: critical
    labels: {team: ml}
    annotations: {summary: "{labels[feature]} psi {value:.2f} > {threshold}"}
"""


def test_persistence_and_hysteresis(storage):
    with WebhookReceiver() as hook:
        proc = make(storage, HYSTERESIS_RULES.replace("URL", hook.url))
        proc.handle([drift(0, True, value=0.5)])
        assert [a.status for a in proc.active()] == ["pending"]
        proc.handle([drift(1, False, value=0.2)])  # below threshold before firing: pending cancelled
        assert proc.active() == []
        proc.handle([drift(2, True, value=0.5)])
        proc.handle([drift(3, True, value=0.35)])  # second consecutive breach: fires
        assert [a.status for a in proc.active()] == ["firing"]
        proc.handle([drift(4, False, value=0.2)])  # under 0.3 but above resolve_threshold 0.1: still firing
        assert [a.status for a in proc.active()] == ["firing"]
        proc.handle([drift(5, False, value=0.05)])
        assert proc.active() == []
        got = hook.wait_for(2)
        a = got[0].json["alerts"][0]
        assert a["labels"]["severity"] == "critical" and a["labels"]["team"] == "ml"
        assert a["annotations"]["summary"] == "age psi 0.35 > 0.3"
        assert [g.json["status"] for g in got] == ["firing", "resolved"]
        proc.close()


def test_grouping_batches_features_and_for_duration(storage):
    text = """
defaults: false
route: {receiver: ops, group_by: [alertname, model], group_wait: 5s, group_interval: 1m}
receivers: [{name: ops, url: URL}]
rules:
  - {name: Drifted, kind: drift, feature: any, for: 30s}
"""
    with WebhookReceiver() as hook:
        clock = Clock()
        proc = make(storage, text.replace("URL", hook.url), clock=clock)
        proc.handle([drift(0, True, "age"), drift(0, True, "income")])
        assert {a.status for a in proc.active()} == {"pending"}
        proc.tick(clock.t + 10)
        assert {a.status for a in proc.active()} == {"pending"}
        clock.t += 31
        proc.tick(clock.t)  # `for` elapsed: both fire; group_wait holds the notification 5 s
        assert {a.status for a in proc.active()} == {"firing"}
        assert proc.outbox.wait_idle(2) and hook.requests == []
        proc.tick(clock.t + 5)
        (got,) = hook.wait_for(1)
        assert sorted(a["labels"]["feature"] for a in got.json["alerts"]) == ["age", "income"]
        assert got.json["commonLabels"]["model"] == "churn" and "feature" not in got.json["commonLabels"]
        proc.tick(clock.t + 30)
        assert proc.outbox.wait_idle(2) and len(hook.requests) == 1  # nothing new: deduplicated
        proc.close()


def test_signed_webhook_verifies_with_documented_procedure(storage, monkeypatch):
    import hashlib
    import hmac
    monkeypatch.setenv("HOOK_SECRET_T", "s3cr3t")
    text = """
defaults: false
route: {receiver: signed}
receivers: [{name: signed, type: webhook, url: URL, secret_env: HOOK_SECRET_T}]
rules: [{name: AgeDrift, kind: drift, feature: age}]
"""
    with WebhookReceiver() as hook:
        proc = make(storage, text.replace("URL", hook.url))
        proc.handle([drift(0, True)])
        (got,) = hook.wait_for(1)
        ts, sig = got.headers["x-orbitwatch-timestamp"], got.headers["x-orbitwatch-signature"]
        # the procedure from receivers.py, spelled out as a receiver in another language would
        expected = "sha256=" + hmac.new(b"s3cr3t", ts.encode() + b"." + got.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(expected, sig)
        assert verify_signature("s3cr3t", got.body, ts, sig)
        assert not verify_signature("wrong", got.body, ts, sig)
        assert not verify_signature("s3cr3t", got.body + b" ", ts, sig)
        assert not verify_signature("s3cr3t", got.body, ts, sig, now=int(ts) + 301)
        assert got.json["notificationId"] == got.headers["x-orbitwatch-notification-id"]
        assert got.json["alerts"][0]["value"] == pytest.approx(0.42)
        proc.close()


def test_slack_format(storage):
    text = """
defaults: false
route: {receiver: chat}
receivers: [{name: chat, type: slack, url: URL}]
rules: [{name: AgeDrift, kind: drift, feature: age, annotations: {summary: "age drifted"}}]
"""
    with WebhookReceiver() as hook:
        proc = make(storage, text.replace("URL", hook.url))
        proc.handle([drift(0, True)])
        (got,) = hook.wait_for(1)
        assert got.json["text"].startswith("[FIRING:1]")
        att = got.json["attachments"][0]
        assert att["color"] == "danger" and att["title"] == "FIRING: age drifted"
        assert {"title": "feature", "value": "age", "short": True} in att["fields"]
        proc.close()


def test_default_hallucination_rule_fires_and_resolves(storage):
    with WebhookReceiver() as hook:
        clock = Clock()
        proc = make(storage, webhook=hook.url, clock=clock)
        proc.handle([score(0.9), score(0.8)])
        assert proc.active() == []  # fewer than min_samples (3)
        proc.handle([score(0.7), score(0.1, project="other")])
        (got,) = hook.wait_for(1)
        a = got.json["alerts"][0]
        assert a["labels"] == {"alertname": "HighHallucinationRate", "project": "bot", "score": "hallucination",
                               "severity": "warning"}
        assert "0.80" in a["annotations"]["summary"]
        clock.t += 301  # the window slides past every score: no data → resolved on the next schedule
        proc.tick(clock.t)
        proc.tick(clock.t + 11)
        got = hook.wait_for(2)
        assert [g.json["status"] for g in got] == ["firing", "resolved"]
        proc.close()


def test_span_health_error_rate_from_rollups(storage):
    now = datetime.now(timezone.utc)
    rows = [[now - timedelta(seconds=i), f"t{i}", f"s{i}", "call", "api", 2_000_000,
             "STATUS_CODE_ERROR" if i % 2 else "STATUS_CODE_OK", "shop", "gpt"] for i in range(20)]
    storage.insert_rows("spans", ["timestamp", "trace_id", "span_id", "span_name", "service_name", "duration_ns",
                                  "status_code", "project", "model"], rows)
    text = """
defaults: false
route: {receiver: ops}
receivers: [{name: ops, url: URL}]
rules:
  - {name: Errors, kind: span_health, metric: error_rate, by: [project, model], window: 5m, threshold: 0.2}
  - {name: SlowP95, kind: span_health, metric: p95_latency_ms, by: [project], window: 5m, threshold: 500}
"""
    with WebhookReceiver() as hook:
        proc = make(storage, text.replace("URL", hook.url))
        proc.tick(time.time())
        (got,) = hook.wait_for(1)
        a = got.json["alerts"][0]
        assert a["labels"]["alertname"] == "Errors" and a["labels"]["model"] == "gpt"
        assert a["labels"]["metric"] == "error_rate"
        (inst,) = [i for i in proc.active() if i.rule == "Errors"]
        assert inst.value == pytest.approx(0.5) and inst.samples == 20
        assert not [i for i in proc.active() if i.rule == "SlowP95"]  # 2 ms is healthy
        proc.close()


def test_undecodable_record_goes_to_dlq(storage):
    proc = make(storage)
    emits = proc.handle([Message(topic="orbitwatch.drift", value=b"{not json", partition=1, offset=7)])
    assert [e.topic for e in emits] == ["orbitwatch.dlq"]
    assert b"alerts:" in emits[0].headers["orbitwatch-error"] and emits[0].key == b"orbitwatch.drift/1/7"
    proc.close()


def test_uploaded_rules_replace_file_rules_and_resolve_removed(storage):
    with WebhookReceiver() as hook:
        text = RETRY_RULES.replace("URL", hook.url)
        clock = Clock()
        proc = make(storage, text, clock=clock)
        proc.handle([drift(0, True)])
        hook.wait_for(1)
        new = text.replace("{name: AgeDrift, kind: drift, feature: age}",
                           "{name: IncomeDrift, kind: drift, feature: income}")
        storage.insert_rows("alert_rules", ["processor", "version", "yaml", "uploaded_at", "uploaded_by"],
                            [["alerts", 1, new, datetime.now(timezone.utc), "test"]])
        clock.t += 10
        proc.tick(clock.t)
        assert set(proc.config.rules) == {"IncomeDrift"}
        got = hook.wait_for(2)
        assert [g.json["status"] for g in got] == ["firing", "resolved"]
        proc.close()


def test_records_emitted_on_alerts_topic_are_alert_envelopes(storage):
    from orbitwatch.schemas.envelope import decode
    proc = make(storage, webhook="")
    emits = proc.handle([drift(0, True)])
    (alert,) = [decode(e.value) for e in emits]
    assert isinstance(alert, r.Alert) and alert.status == "firing" and alert.labels["feature"] == "age"
    assert emits[0].key == alert.fingerprint.encode()
    # no receiver configured: evaluated and stored, the notification is counted as no_receiver
    assert storage.scalar("SELECT count() FROM alerts") == 1
    assert json.loads(json.dumps(proc.snapshot())) == {}
    proc.close()


def test_replaying_a_finished_episode_after_restart_sends_nothing(storage):
    """Runners re-deliver everything since their last checkpoint; an old episode must stay old."""
    with WebhookReceiver() as hook:
        text = RETRY_RULES.replace("URL", hook.url)
        proc = make(storage, text)
        proc.handle([drift(0, True)])
        proc.handle([drift(1, False)])
        assert [g.json["status"] for g in hook.wait_for(2)] == ["firing", "resolved"]
        proc.close()
        again = make(storage, text)
        again.handle([drift(0, True)])
        again.handle([drift(1, False)])
        assert again.outbox.wait_idle(5)
        time.sleep(0.2)
        assert len(hook.requests) == 2
        assert again.prune(time.time() + 2 * 86400) == 1  # a day later the series is forgotten
        again.tick(time.time())
        assert again.instances == {}
        again.close()


def test_send_resolved_false_and_repeat_interval(storage):
    text = """
defaults: false
route: {receiver: ops, group_interval: 1s, repeat_interval: 1m, send_resolved: false}
receivers: [{name: ops, url: URL}]
rules: [{name: AgeDrift, kind: drift, feature: age}]
"""
    with WebhookReceiver() as hook:
        clock = Clock()
        proc = make(storage, text.replace("URL", hook.url), clock=clock)
        proc.handle([drift(0, True)])
        hook.wait_for(1)
        proc.tick(clock.t + 30)  # still firing, repeat_interval not reached
        assert proc.outbox.wait_idle(2) and len(hook.requests) == 1
        clock.t += 61
        proc.tick(clock.t)  # repeat
        got = hook.wait_for(2)
        assert [g.json["status"] for g in got] == ["firing", "firing"]
        assert got[0].notification_id != got[1].notification_id
        proc.handle([drift(1, False)])
        proc.tick(clock.t + 2)
        assert proc.outbox.wait_idle(2)
        time.sleep(0.2)
        assert len(hook.requests) == 2  # resolved, but send_resolved is false
        assert storage.scalar("SELECT count() FROM alerts FINAL WHERE status = 'resolved'") == 1
        proc.close()


def test_data_quality_rule_and_metrics(storage):
    from prometheus_client import REGISTRY
    text = """
defaults: false
route: {receiver: ops}
receivers: [{name: ops, url: URL}]
rules:
  - {name: Missing, kind: data_quality, metric: missing_rate, feature: "*", threshold: 0.2}
"""

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = sample("orbitwatch_alert_transitions_total", rule="Missing", status="firing")
    delivered = sample("orbitwatch_alert_notifications_total", receiver="ops", outcome="delivered")
    with WebhookReceiver() as hook:
        proc = make(storage, text.replace("URL", hook.url))
        rec = r.DataQuality(project="shop", model="churn", feature="zip", metric="missing_rate", value=0.35,
                            window_start=T0, window_end=T0 + timedelta(minutes=1), is_final=True)
        other = rec.model_copy(update={"metric": "unseen_categories"})
        proc.handle([Message(topic="orbitwatch.drift", value=encode(rec)),
                     Message(topic="orbitwatch.drift", value=encode(other))])
        (got,) = hook.wait_for(1)
        assert got.json["alerts"][0]["labels"]["feature"] == "zip"
        assert got.json["alerts"][0]["labels"]["metric"] == "missing_rate"
        assert proc.outbox.wait_idle(5)
        assert sample("orbitwatch_alert_transitions_total", rule="Missing", status="firing") == before + 1
        assert sample("orbitwatch_alert_notifications_total", receiver="ops", outcome="delivered") == delivered + 1
        proc.close()


def test_span_health_volume_drop_against_baseline(storage):
    now = time.time()
    base = datetime.fromtimestamp(now, timezone.utc)
    rows = []
    for minute in range(10, 60):  # 50 minutes of 10 spans/minute before the window
        for i in range(10):
            rows.append([base - timedelta(minutes=minute), f"t{minute}-{i}", "s", "call", "api", 1000, "STATUS_CODE_OK",
                         "shop", "gpt"])
    rows.append([base - timedelta(seconds=30), "tnow", "s", "call", "api", 1000, "STATUS_CODE_OK", "shop", "gpt"])
    storage.insert_rows("spans", ["timestamp", "trace_id", "span_id", "span_name", "service_name", "duration_ns",
                                  "status_code", "project", "model"], rows)
    text = """
defaults: false
route: {receiver: ops}
receivers: [{name: ops, url: URL}]
rules:
  - {name: VolumeDrop, kind: span_health, metric: volume_ratio, by: [project], window: 5m, baseline: 1h,
     op: "<", threshold: 0.3, annotations: {summary: "volume at {value:.0%} of baseline"}}
"""
    with WebhookReceiver() as hook:
        proc = make(storage, text.replace("URL", hook.url))
        proc.tick(now)
        (got,) = hook.wait_for(1)
        a = got.json["alerts"][0]
        assert a["labels"]["alertname"] == "VolumeDrop" and a["labels"]["project"] == "shop"
        (inst,) = proc.active()
        assert inst.value < 0.3  # ~1 span in 5 min vs ~50 per 5 min in the baseline hour
        proc.close()


def test_only_the_primary_test_of_a_feature_alerts_by_default(storage):
    with WebhookReceiver() as hook:
        proc = make(storage, webhook=hook.url)
        secondary = r.DriftResult(project="shop", model="churn", model_version="v3", feature="age", metric="ks",
                                  value=0.3, threshold=0.05, drifted=True, window_start=T0,
                                  window_end=T0 + timedelta(minutes=1), is_final=True, is_primary=False)
        proc.handle([Message(topic="orbitwatch.drift", value=encode(secondary))])
        assert proc.active() == []
        proc.handle([drift(0, True)])
        (got,) = hook.wait_for(1)
        assert [a["labels"]["metric"] for a in got.json["alerts"]] == ["psi"]
        proc.close()


def test_timeout_is_retried_and_the_id_lets_the_receiver_dedup(storage):
    text = RETRY_RULES.replace("backoff_initial: 50ms", "timeout: 300ms, backoff_initial: 50ms")
    with WebhookReceiver(script=[(200, 1.0)]) as hook:  # answers, but only after our timeout
        proc = make(storage, text.replace("URL", hook.url))
        proc.handle([drift(0, True)])
        got = hook.wait_for(2, timeout=10)
        assert proc.outbox.wait_idle(5)
        assert len(got) == 2 and len(hook.unique()) == 1  # at-least-once; one per notification id
        proc.close()


def test_429_retry_after_is_honoured(storage):
    with WebhookReceiver(script=[(429, 0, {"Retry-After": "0.5"})]) as hook:
        proc = make(storage, RETRY_RULES.replace("URL", hook.url).replace("backoff_max: 200ms", "backoff_max: 5s"))
        proc.handle([drift(0, True)])
        got = hook.wait_for(2, timeout=10, accepted=False)
        assert [g.status for g in got] == [429, 200]
        assert got[1].at - got[0].at >= 0.45
        proc.close()
