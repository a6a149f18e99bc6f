"""Done-when of the all-in-one mode: ``orbitwatch up`` as a real subprocess, the demo sent with the
SDK, everything checked through the HTTP API and the CLI, an alert received by a real loopback
webhook, then SIGTERM, a restart on the same data dir, and everything still there."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import socket
import urllib.parse

import pytest

pytestmark = pytest.mark.timeout(300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Webhook:
    """A real HTTP receiver on loopback that records every POST body (Alertmanager v4 JSON)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict]:
        return [a for p in self.posts for a in p.get("alerts", [])]

    def close(self) -> None:
        self.server.shutdown()


class Up:
    """``orbitwatch up`` in a subprocess on free ports."""

    def __init__(self, data_dir: Path, webhook: str, log: Path) -> None:
        self.grpc, self.http, self.api = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api}"
        self.log = open(log, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("ORBITWATCH_DRIFT_CONFIG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orbitwatch.cli", "up", "--data-dir", str(data_dir), "--grpc-port", str(self.grpc),
             "--http-port", str(self.http), "--api-port", str(self.api), "--no-auth", "--alert-webhook", webhook],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.started = time.monotonic()
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"orbitwatch up exited: {log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"not ready in 60 s: {log.read_text()[-3000:]}"
            time.sleep(0.1)
        self.ready_after = time.monotonic() - self.started

    def get(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}{path}" + (f"?{query}" if query else ""), timeout=30) as r:
            return json.loads(r.read())

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "orbitwatch.cli", *args, "--url", self.url], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        self.log.close()
        return rc


def _state(up: Up) -> dict:
    """Everything the test asserts on, read through the API."""
    exps = up.get("/api/v1/experiments", project="orbitwatch-demo")["items"]
    fast = next(e for e in exps if e["name"] == "churn-mlp-lr0.01")
    hist = up.get(f"/api/v1/experiments/{fast['experiment_id']}/metrics", name=["train_loss", "val_loss"], x="step")
    scored = up.get("/api/v1/traces", project="orbitwatch-demo", has_score="hallucination", limit=100)["items"]
    trees = {t["trace_id"]: up.get(f"/api/v1/traces/{t['trace_id']}") for t in scored}
    drift = up.get("/api/v1/drift/churn-predictor", project="orbitwatch-demo", final_only="true")
    alerts = up.get("/api/v1/alerts", history="true", limit=1000)["items"]
    return {"experiments": exps, "history": hist, "trees": trees, "drift": drift, "alerts": alerts,
            "tables": up.get("/api/v1/status")["tables"]}


def _llm_spans(span: dict) -> list[dict]:
    found = [span] if span["span_type"] == "llm" else []
    for c in span["children"]:
        found += _llm_spans(c)
    return found


def test_up_demo_api_cli_restart(tmp_path):
    hook = Webhook()
    data_dir = tmp_path / "data"
    log = tmp_path / "up.log"
    up = Up(data_dir, hook.url, log)
    try:
        demo = subprocess.run([sys.executable, "-m", "orbitwatch.cli", "demo", "--endpoint",
                               f"http://127.0.0.1:{up.grpc}", "--url", up.url, "--wait", "120"],
                              capture_output=True, text=True, timeout=240)
        assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-2000:]
        assert "what landed" in demo.stdout

        # alerts are delivered asynchronously through the outbox; give the webhook a moment
        deadline = time.monotonic() + 60
        while not any(a["labels"].get("feature") == "monthly_charges" for a in hook.alerts()):
            assert time.monotonic() < deadline, f"no drift alert at the webhook: {hook.posts}"
            time.sleep(0.2)
        s1 = _state(up)

        # experiments: every point of the curves, ordered by step
        assert {e["name"] for e in s1["experiments"]} == {"churn-mlp-lr0.01", "churn-mlp-lr0.003"}
        train = s1["history"]["series"]["train_loss"]
        assert len(train) == 120 and [p["step"] for p in train] == list(range(120))
        assert train[0]["value"] > train[-1]["value"] and {p["epoch"] for p in train} == set(range(12))
        assert len(s1["history"]["series"]["val_loss"]) == 12

        # traces: a tree with LLM columns and eval scores; hallucinated answers score higher
        assert len(s1["trees"]) == 8
        halluc = {}
        for tid, tree in s1["trees"].items():
            (root,) = tree["spans"]
            assert root["span_name"] == "rag_answer" and root["span_type"] == "chain"
            assert {c["span_type"] for c in root["children"]} == {"guardrail", "retriever", "llm"}
            (llm,) = _llm_spans(root)
            assert llm["model"] == "gpt-4o-mini" and llm["provider"] == "openai"
            assert llm["input_tokens"] > 0 and llm["output_tokens"] > 0 and llm["cost"] > 0
            scores = {s["name"]: s["value"] for s in llm["scores"]}
            assert "hallucination" in scores
            halluc[tid] = (scores["hallucination"], llm["output"])
        invented = [v for v, out in halluc.values() if "Napoleon" in out or "Gagarin" in out or "Curie" in out]
        grounded = [v for v, out in halluc.values() if "1889 and is 330" in out]
        assert invented and grounded and min(invented) > max(grounded)

        # drift: flagged on the shifted feature by its deciding test
        assert "monthly_charges" in s1["drift"]["drifted_features"]
        primary = {r["feature"]: r for r in s1["drift"]["summary"] if r["primary"]}
        assert primary["monthly_charges"]["drifted_windows"] >= 2

        # the alert reached the webhook in Alertmanager v4 form, and is in the alerts table
        post = next(p for p in hook.posts if any(a["labels"].get("feature") == "monthly_charges" for a in p["alerts"]))
        assert post["version"] == "4" and post["status"] in ("firing", "resolved")
        assert any(a["rule"] == "FeatureDrift" and a["labels"].get("feature") == "monthly_charges"
                   for a in s1["alerts"])

        # the CLI views, talking to the running instance
        tid = max(halluc, key=lambda t: halluc[t][0])  # the most hallucinated answer
        out = up.cli("traces", "show", tid)
        assert "rag_answer" in out and "generate" in out and "gpt-4o-mini" in out and "hallucination" in out
        assert tid in up.cli("traces", "ls", "--has-score", "hallucination", "--limit", "50")
        fast = next(e for e in s1["experiments"] if e["name"] == "churn-mlp-lr0.01")["experiment_id"]
        out = up.cli("experiments", "show", fast)
        assert "train_loss" in out and "learning_rate" in out and "0.01" in out
        out = up.cli("experiments", "compare", *[e["experiment_id"] for e in s1["experiments"]])
        assert "learning_rate" in out and "0.003" in out
        out = up.cli("drift", "churn-predictor")
        assert "drifted features: monthly_charges" in out
        assert "FeatureDrift" in up.cli("alerts")
        with urllib.request.urlopen(f"{up.url}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert 'orbitwatch_bus_published_records_total{topic="otlp.traces"}' in metrics
        assert 'orbitwatch_embedded_handled_records_total{processor="sink"}' in metrics
        assert "orbitwatch_gateway_items_accepted_total" in metrics
        sql = json.loads(up.cli("sql", "SELECT count() AS n FROM experiment_metrics FINAL", "--format", "json"))
        assert sql == [{"n": 288}]
        before_stop = _state(up)  # what a restart must show again
    finally:
        rc = up.stop()
    assert rc == 0, log.read_text()[-3000:]
    posts_before = len(hook.posts)

    # restart on the same data dir: all data, and the alert state (no re-notification)
    up2 = Up(data_dir, hook.url, log)
    try:
        assert up2.ready_after < 15, f"restart took {up2.ready_after:.1f} s"
        s2 = _state(up2)
        for table in ("spans", "experiments", "experiment_params", "experiment_metrics", "predictions",
                      "eval_scores", "drift_results", "alerts"):
            assert s2["tables"][table] == before_stop["tables"][table] > 0, table
        assert s2["history"] == s1["history"]
        assert s2["trees"] == before_stop["trees"]
        assert s2["drift"]["drifted_features"] == s1["drift"]["drifted_features"]
        time.sleep(3)  # a few alert evaluations: a restored firing alert is not sent again
        assert len(hook.posts) == posts_before
        assert "rag_answer" in up2.cli("traces", "show", tid)
    finally:
        assert up2.stop() == 0
        hook.close()


def test_sigkill_after_ack_loses_nothing(tmp_path):
    """What the gateway acknowledged is in the bus log before the answer; a hard kill right after the
    last acknowledgement and a restart still store every span exactly once."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    sys.path.insert(0, str(Path(__file__).parent))
    from test_embedded_runner import _otlp_body

    data_dir = tmp_path / "data"
    log = tmp_path / "up.log"
    up = Up(data_dir, "http://127.0.0.1:9/unused", log)
    sent = 0
    try:
        for batch in range(10):
            body = _otlp_body(500)  # 500 traces of one span; ids repeat per batch -> offset them
            req = ExportTraceServiceRequest.FromString(body)
            for s in req.resource_spans[0].scope_spans[0].spans:
                s.trace_id = (int.from_bytes(s.trace_id, "big") + batch * 1000).to_bytes(16, "big")
                s.start_time_unix_nano = s.end_time_unix_nano = time.time_ns()
            r = urllib.request.Request(f"http://127.0.0.1:{up.http}/v1/traces", data=req.SerializeToString(),
                                       headers={"content-type": "application/x-protobuf"})
            with urllib.request.urlopen(r, timeout=30) as resp:
                assert resp.status == 200
            sent += 500
    finally:
        up.proc.kill()  # SIGKILL: no drain, no checkpoint
        up.proc.wait(timeout=30)
        up.log.close()
    up2 = Up(data_dir, "http://127.0.0.1:9/unused", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            n = up2.get("/api/v1/status")["tables"]["spans"]
            if n >= sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert n == sent  # FINAL count: every acknowledged span, none twice
    finally:
        assert up2.stop() == 0


def test_up_demo_flag_prints_summary_and_keeps_serving(tmp_path):
    """The README's run command (`make up` = `orbitwatch up --demo`)."""
    grpc, http, api = free_port(), free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ORBITWATCH_DRIFT_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "orbitwatch.cli", "up", "--demo", "--data-dir", str(tmp_path / "d"),
                             "--grpc-port", str(grpc), "--http-port", str(http), "--api-port", str(api)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        for line in proc.stdout:
            lines.append(line)
            if "still serving" in line or time.monotonic() > deadline:
                break
        out = "".join(lines)
        assert "demo done; still serving" in out, out[-4000:]
        assert "what landed" in out and "drifted features: monthly_charges" in out and "FeatureDrift" in out
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/readyz", timeout=5) as r:
            assert r.status == 200  # still serving after the demo
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
