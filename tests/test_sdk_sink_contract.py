"""The SDK ↔ sink contract end to end, without Kafka: SDK → OTLP/gRPC (real receiver) → the bytes
the gateway would publish → ``SinkProcessor.handle`` → rows in a real embedded ClickHouse.

Catches any drift between what the SDK writes and what the sink decodes (attribute names,
event shapes, pre-encoded events, reference chunking, feedback payloads).
"""
from __future__ import annotations

import numpy as np

import orbitwatch
from orbitwatch import Experiment, MonitoredModel, log_feedback, track, update_current_span
from orbitwatch.monitoring import REFERENCE_CHUNK
from orbitwatch.processors.base import Message
from orbitwatch.schemas import attributes as A

from .otlp_receiver import OtlpReceiver


def sink_dlq(rx: OtlpReceiver, storage) -> list:
    """Feed everything the receiver got to the sink; return its dead-letter emits (expected: none)."""
    from orbitwatch.processors.sink import SinkProcessor
    sink = SinkProcessor(storage)
    batch = [Message("otlp.traces", req.SerializeToString(), headers={A.TENANT_HEADER: b"acme"}, offset=i)
             for i, (req, _) in enumerate(rx.requests)]
    emits = sink.handle(batch)
    return [e for e in emits if e.topic == "orbitwatch.dlq"]


def test_experiment_monitoring_and_feedback_land_in_their_tables(storage, tmp_path, monkeypatch, unique):
    monkeypatch.setenv("ORBITWATCH_ARTIFACT_URI", (tmp_path / "art").as_uri())
    with OtlpReceiver() as rx:
        orbitwatch.configure(endpoint=rx.endpoint, project=f"p{unique}")
        exp = Experiment(project_name=f"p{unique}", workspace="ws", tags=["baseline"])
        exp.log_parameters({"lr": 0.01, "opt": {"name": "adam"}})
        for i in range(3):
            exp.log_metric("loss", 1.0 / (i + 1), step=0)  # three points at one step: all kept
        exp.log_other("notes", "first run")
        exp.add_tag("gpu")
        exp.log_model("clf", {"weights": [1, 2]})
        exp.set_name("run-1")
        exp.end()

        model = MonitoredModel("churn", "v1", project_name=f"p{unique}")
        model.log_prediction("a", {"age": 30, "city": "Paris", "x": None}, prediction="yes", probability=0.9)
        model.log_label("a", "no")
        n = REFERENCE_CHUNK + 5
        model.set_reference({"age": np.arange(n, dtype=float), "city": ["a", "b"] * 3})

        @track(type="llm")
        def answer():
            update_current_span(model="gpt-4o-mini", provider="openai",
                                feedback_scores=[{"name": "format", "value": 1}])
            return orbitwatch.tracking.get_current_trace_id(), orbitwatch.tracking.get_current_span_id()

        trace_id, span_id = answer()
        log_feedback(trace_id=trace_id, span_id=span_id, name="thumbs", value=0, reason="wrong", annotator="bob")
        assert orbitwatch.flush(20)
        rx.wait_for(lambda ss: any(s.attributes.get(A.KIND) == "feedback" for s in ss))

    dlq = sink_dlq(rx, storage)
    assert not dlq, [e.headers for e in dlq]

    row = storage.query_dicts(f"SELECT * FROM experiments FINAL WHERE experiment_id = '{exp.id}'")[0]
    assert (row["status"], row["name"], row["workspace"], row["tenant"]) == ("finished", "run-1", "ws", "acme")
    assert sorted(row["tags"]) == ["baseline", "gpu"] and row["ended_at"] is not None
    assert "python_version" in row["system"]
    metrics = storage.query_dicts(
        f"SELECT step, value, seq FROM experiment_metrics FINAL WHERE experiment_id = '{exp.id}' ORDER BY seq")
    assert [(m["step"], m["value"], m["seq"]) for m in metrics] == [(0, 1.0, 0), (0, 0.5, 1), (0, 1 / 3, 2)]
    params = storage.query_dicts(f"SELECT name, value FROM experiment_params FINAL WHERE experiment_id = '{exp.id}'")
    assert {p["name"]: p["value"] for p in params} == {"lr": "0.01", "opt.name": "adam"}
    assets = storage.query_dicts(f"SELECT * FROM experiment_assets FINAL WHERE experiment_id = '{exp.id}'")
    assert [(a["name"], a["kind"]) for a in assets] == [("clf", "model")] and len(assets[0]["sha256"]) == 64

    pred = storage.query_dicts("SELECT * FROM predictions FINAL WHERE model = 'churn'")[0]
    assert pred["numeric_features"] == {"age": 30.0} and pred["categorical_features"] == {"city": "Paris"}
    assert list(pred["missing_features"]) == ["x"] and pred["label"] == "no" and pred["probability"] == 0.9
    refs = {r["feature"]: r
            for r in storage.query_dicts("SELECT * FROM reference_features FINAL WHERE model = 'churn'")}
    assert len(refs["age"]["numeric_values"]) == n and list(refs["city"]["categorical_values"]) == ["a", "b"] * 3

    scores = {s["name"]: s for s in storage.query_dicts("SELECT * FROM eval_scores FINAL")}
    assert scores["thumbs"]["entity_id"] == span_id and scores["thumbs"]["trace_id"] == trace_id
    assert scores["thumbs"]["source"] == "sdk" and scores["thumbs"]["annotator"] == "bob"
    assert scores["format"]["entity_id"] == span_id and scores["format"]["value"] == 1.0
    span = storage.query_dicts(f"SELECT * FROM spans FINAL WHERE span_id = '{span_id}'")[0]
    assert (span["span_type"], span["model"], span["provider"]) == ("llm", "gpt-4o-mini", "openai")
