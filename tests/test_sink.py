"""The sink processor against a real embedded ClickHouse (chdb): what lands in which column.

These drive ``SinkProcessor.handle`` directly with Kafka-shaped messages; tests/test_worker.py
drives the same processor through a real broker and the faust worker.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from orbitwatch.processors.base import Message, RetryableError
from orbitwatch.processors.sink import DLQ_TOPIC, ERROR_HEADER, LLM_SPANS_TOPIC, PREDICTIONS_TOPIC, SinkProcessor
from orbitwatch.processors.sink.prices import PriceTable
from orbitwatch.schemas import attributes as A
from orbitwatch.schemas import envelope
from orbitwatch.schemas import records as r
from tests.test_sink_builders import NOW_NS, request, sdk_request

T0 = NOW_NS


def msg(req, offset=0, tenant="acme", project=None, topic="otlp.traces", partition=0) -> Message:
    headers = {A.TENANT_HEADER: tenant.encode()}
    if project:
        headers[A.PROJECT_HEADER] = project.encode()
    value = req if isinstance(req, bytes) else req.SerializeToString()
    return Message(topic=topic, value=value, key=b"k", headers=headers, partition=partition, offset=offset)


@pytest.fixture
def sink(storage):
    return SinkProcessor(storage, PriceTable.load(), default_project="fallback")


def spans_by_name(storage) -> dict[str, dict]:
    return {row["span_name"]: row for row in storage.query_dicts("SELECT * FROM spans FINAL")}


def test_opentelemetry_sdk_genai_current_and_deprecated_forms(sink, storage):
    def build(tracer):
        with tracer.start_as_current_span("chat gpt-4o", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 500,
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"content": "hello"}]}]),
                "gen_ai.conversation.id": "conv-1", "user.id": "u-7"}):
            with tracer.start_as_current_span("old-style", attributes={
                    "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-sonnet-20241022",
                    "gen_ai.usage.prompt_tokens": 2_000_000, "gen_ai.usage.completion_tokens": 0,
                    "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "what is 2+2",
                    "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "4"}):
                pass
            with tracer.start_as_current_span("event-style", attributes={
                    "gen_ai.system": "openai", "gen_ai.request.model": "my-private-model",
                    "gen_ai.usage.prompt_tokens": 10}) as span:
                span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "tell me a joke"})
                span.add_event("gen_ai.content.completion", {"gen_ai.completion": "no"})
            with tracer.start_as_current_span("GET /health", attributes={"http.route": "/health"}):
                pass

    emits = sink.handle([msg(sdk_request(build))])
    rows = spans_by_name(storage)
    chat = rows["chat gpt-4o"]
    assert (chat["span_type"], chat["model"], chat["provider"]) == ("llm", "gpt-4o", "openai")
    assert (chat["input_tokens"], chat["output_tokens"]) == (1000, 500)
    assert chat["cost"] == pytest.approx(1000 * 2.5 / 1e6 + 500 * 10 / 1e6)
    assert json.loads(chat["input"])[0]["role"] == "user" and "hello" in chat["output"]
    assert (chat["session_id"], chat["user_id"], chat["tenant"]) == ("conv-1", "u-7", "acme")
    assert chat["project"] == "otel-app"  # service.name fallback
    assert chat["span_attributes"]["gen_ai.request.model"] == "gpt-4o"

    old = rows["old-style"]
    assert (old["span_type"], old["provider"], old["input_tokens"]) == ("llm", "anthropic", 2_000_000)
    assert old["cost"] == pytest.approx(6.0)  # 2M prompt tokens at $3/1M, dated model name → prefix match
    assert json.loads(old["input"]) == [{"role": "user", "content": "what is 2+2"}]
    assert json.loads(old["output"]) == [{"role": "assistant", "content": "4"}]
    assert old["parent_span_id"] == chat["span_id"] and old["trace_id"] == chat["trace_id"]

    ev = rows["event-style"]
    assert (ev["input"], ev["output"], ev["cost"]) == ("tell me a joke", "no", 0.0)  # unknown model: unpriced
    assert list(ev["events.name"]) == ["gen_ai.content.prompt", "gen_ai.content.completion"]

    plain = rows["GET /health"]
    assert (plain["span_type"], plain["model"], plain["input"]) == ("general", "", "")
    # LLM spans (not the plain one) are re-published for the evals processor as SpanRow envelopes
    llm = [envelope.decode(e.value) for e in emits if e.topic == LLM_SPANS_TOPIC]
    assert sorted(s.span_name for s in llm) == ["chat gpt-4o", "event-style", "old-style"]
    assert all(isinstance(s, r.SpanRow) and s.tenant == "acme" for s in llm)


def test_openinference_attributes(sink, storage):
    tid = "ab" * 16
    spans = [
        {"trace_id": tid, "span_id": "01" * 8, "name": "ChatOpenAI", "attrs": {
            "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
            "llm.token_count.prompt": 100, "llm.token_count.completion": 20,
            "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "be brief",
            "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": "hi",
            "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "hey",
            "session.id": "s-1", "user.id": "alice", "tag.tags": ["a", "b"]}},
        {"trace_id": tid, "span_id": "02" * 8, "name": "retrieve", "attrs": {
            "openinference.span.kind": "RETRIEVER", "input.value": "what is orbitwatch?",
            "retrieval.documents.0.document.content": "doc one", "retrieval.documents.0.document.score": 0.9,
            "retrieval.documents.1.document.content": "doc two", "retrieval.documents.1.document.id": "d2"}},
        {"trace_id": tid, "span_id": "03" * 8, "name": "agent", "attrs": {
            "openinference.span.kind": "AGENT", "input.value": "{\"q\": 1}", "output.value": "done"}},
    ]
    sink.handle([msg(request(spans), project="bound-project")])
    rows = spans_by_name(storage)
    llm = rows["ChatOpenAI"]
    assert (llm["span_type"], llm["model"], llm["provider"], llm["input_tokens"], llm["output_tokens"]) == (
        "llm", "gpt-4o-mini", "openai", 100, 20)
    assert llm["cost"] == pytest.approx(100 * 0.15 / 1e6 + 20 * 0.6 / 1e6)
    assert json.loads(llm["input"]) == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert json.loads(llm["output"]) == [{"role": "assistant", "content": "hey"}]
    assert (llm["session_id"], llm["user_id"], list(llm["tags"])) == ("s-1", "alice", ["a", "b"])
    assert llm["project"] == "bound-project"  # the gateway's project header wins
    ret = rows["retrieve"]
    assert ret["span_type"] == "retriever" and ret["input"] == "what is orbitwatch?"
    assert json.loads(ret["output"]) == [{"content": "doc one", "score": 0.9}, {"content": "doc two", "id": "d2"}]
    assert (rows["agent"]["span_type"], rows["agent"]["output"]) == ("agent", "done")


def test_orbitwatch_sdk_attributes_and_feedback_scores(sink, storage):
    tid = "cd" * 16
    spans = [{"trace_id": tid, "span_id": "11" * 8, "name": "answer", "attrs": {
        A.KIND: None, A.SPAN_TYPE: "llm", A.INPUT: '{"question": "q"}', A.OUTPUT: '"a"', A.COST: 0.42,
        A.SESSION_ID: "thread-9", A.USER_ID: "bob", A.TAGS: '["prod"]', A.PROJECT: "span-project",
        "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1_000_000, A.CONTEXT: '["ctx"]',
        A.FEEDBACK_SCORES: json.dumps([{"name": "helpful", "value": 1.0, "reason": "ok"}])}}]
    spans[0]["attrs"].pop(A.KIND)
    emits = sink.handle([msg(request(spans, resource={"service.name": "svc", A.PROJECT: "res-project"}))])
    row = spans_by_name(storage)["answer"]
    assert (row["span_type"], row["input"], row["output"], row["cost"]) == ("llm", '{"question": "q"}', '"a"', 0.42)
    assert (row["session_id"], row["user_id"], list(row["tags"]), row["project"]) == (
        "thread-9", "bob", ["prod"], "span-project")  # span attribute beats resource attribute
    scores = storage.query_dicts("SELECT * FROM eval_scores FINAL")
    assert [(s["name"], s["value"], s["source"], s["entity_id"], s["trace_id"], s["tenant"]) for s in scores] == [
        ("helpful", 1.0, "sdk", "11" * 8, tid, "acme")]
    assert [e.topic for e in emits] == [LLM_SPANS_TOPIC]


def test_experiment_spans_and_batches(sink, storage):
    tid = "ee" * 16
    exp = {A.KIND: "experiment", A.EXPERIMENT_ID: "exp-1", A.EXPERIMENT_NAME: "run-a", A.EXPERIMENT_STATUS: "running",
           A.EXPERIMENT_STARTED_AT: str(T0), A.EXPERIMENT_TAGS: '["baseline"]',
           A.EXPERIMENT_SYSTEM: '{"python": "3.12", "git": {"sha": "abc"}}'}
    events = [{"name": "metric", "time": T0 + i * 1000, "attrs": {"name": "loss", "value": 1.0 / (i + 1), "step": i,
                                                                  "epoch": 0, "seq": i}} for i in range(3)]
    events += [{"name": "metric", "time": T0, "attrs": {"name": "loss", "value": 9.0, "step": 0, "seq": 3}},
               {"name": "param", "attrs": {"name": "lr", "value": 0.01}},
               {"name": "other", "attrs": {"name": "notes", "value": "hello"}},
               {"name": "tag", "attrs": {"name": "gpu"}},
               {"name": "asset", "attrs": {"name": "model.pt", "uri": "file:///m.pt", "size": 10, "kind": "model"}},
               {"name": "metric", "attrs": {"name": "broken"}}]  # no value → DLQ, rest kept
    batch = {A.KIND: "experiment.batch", A.EXPERIMENT_ID: "exp-1"}
    first = sink.handle([msg(request([
        {"trace_id": tid, "span_id": "21" * 8, "name": "experiment", "attrs": exp, "start": T0, "end": T0 + 10},
        {"trace_id": tid, "span_id": "22" * 8, "name": "batch", "attrs": batch, "events": events}]))])
    assert [e.topic for e in first] == [DLQ_TOPIC] and b"bad metric" in first[0].headers[ERROR_HEADER]
    # finished later: a re-sent experiment span; tags are unioned with the stored row
    done = dict(exp, **{A.EXPERIMENT_STATUS: "finished", A.EXPERIMENT_ENDED_AT: str(T0 + 10**9),
                        A.EXPERIMENT_TAGS: '["final"]'})
    sink.handle([msg(request([{"trace_id": tid, "span_id": "23" * 8, "name": "experiment", "attrs": done,
                               "start": T0, "end": T0 + 10**9}]), offset=1)])
    (e,) = storage.query_dicts("SELECT * FROM experiments FINAL")
    assert (e["name"], e["status"], e["tenant"]) == ("run-a", "finished", "acme")
    assert sorted(e["tags"]) == ["baseline", "final", "gpu"]
    assert e["system"] == {"python": "3.12", "git": '{"sha":"abc"}'} and e["ended_at"] is not None
    pts = storage.query("SELECT step, seq, value FROM experiment_metrics FINAL ORDER BY seq")[1]
    assert pts == [(0, 0, 1.0), (1, 1, 0.5), (2, 2, pytest.approx(1 / 3)), (0, 3, 9.0)]  # two points at step 0 kept
    assert storage.query("SELECT name, value FROM experiment_params FINAL")[1] == [("lr", "0.01")]
    assert storage.query("SELECT name, value FROM experiment_others FINAL")[1] == [("notes", "hello")]
    assert storage.query("SELECT name, kind, uri, size FROM experiment_assets FINAL")[1] == [
        ("model.pt", "model", "file:///m.pt", 10)]
    assert storage.scalar("SELECT count() FROM spans") == 0  # records are not spans


def _pred_event(kind: str, record) -> dict:
    return {"name": kind, "attrs": {A.PAYLOAD: record.model_dump_json()}}


def test_predictions_late_labels_and_reference_chunks(sink, storage):
    ts = datetime(2026, 1, 1, tzinfo=timezone.utc)
    p1 = r.Prediction(model="churn", model_version="1", prediction_id="p1", timestamp=ts,
                      numeric_features={"age": 30.0}, categorical_features={"plan": "pro"}, prediction="yes",
                      probability=0.8, project="sdk-project", tenant="forged")
    p2 = p1.model_copy(update={"prediction_id": "p2"})
    early = r.Label(model="churn", model_version="1", prediction_id="p2", label="no", project="sdk-project",
                    timestamp=datetime(2026, 1, 2, tzinfo=timezone.utc))
    ref = [r.ReferenceFeature(model="churn", model_version="1", feature="age", kind="numeric",
                              numeric_values=[float(i), float(i + 10)], project="sdk-project", created_at=ts)
           for i in range(3)]
    tid = "aa" * 16

    def pspan(sid, events):
        return request([{"trace_id": tid, "span_id": sid * 8, "name": "predictions",
                         "attrs": {A.KIND: "prediction.batch"}, "events": events}])

    # batch 1: p1, a label for p2 (not seen yet), reference chunks 0 and 2 of 3
    out1 = sink.handle([msg(pspan("31", [
        _pred_event("prediction", p1), _pred_event("label", early),
        {"name": "reference", "attrs": {A.PAYLOAD: ref[0].model_dump_json(), "chunk": 0, "chunks": 3}},
        {"name": "reference", "attrs": {A.PAYLOAD: ref[2].model_dump_json(), "chunk": 2, "chunks": 3}},
        {"name": "prediction", "attrs": {A.PAYLOAD: '{"model": "x"}'}}]))])
    assert sink.snapshot()["reference_chunks"]  # pending parts survive in state
    # state round-trips through JSON (what the runner persists)
    restored = SinkProcessor(storage)
    restored.restore(json.loads(json.dumps(sink.snapshot())))
    late = r.Label(model="churn", model_version="1", prediction_id="p1", label="yes", label_value=1.0,
                   project="sdk-project", timestamp=datetime(2026, 1, 3, tzinfo=timezone.utc))
    out2 = restored.handle([msg(pspan("32", [
        _pred_event("prediction", p2), _pred_event("label", late),
        {"name": "reference", "attrs": {A.PAYLOAD: ref[1].model_dump_json(), "chunk": 1, "chunks": 3}}]),
        offset=1)])
    preds = {p["prediction_id"]: p for p in storage.query_dicts("SELECT * FROM predictions FINAL")}
    assert (preds["p1"]["label"], preds["p1"]["label_value"]) == ("yes", 1.0)  # late label re-wrote the row
    assert preds["p2"]["label"] == "no"  # label that came first was applied when the prediction arrived
    assert preds["p1"]["tenant"] == "acme"  # tenant only from the header
    assert storage.scalar("SELECT count() FROM prediction_labels FINAL") == 2
    (refrow,) = storage.query_dicts("SELECT * FROM reference_features FINAL")
    assert list(refrow["numeric_values"]) == [0.0, 10.0, 1.0, 11.0, 2.0, 12.0]
    assert restored.snapshot() == {}
    # drift gets every decoded record, keyed by project/model/version; the invalid payload went to the DLQ
    pub1 = [(e.key, type(envelope.decode(e.value)).__name__) for e in out1 if e.topic == PREDICTIONS_TOPIC]
    assert pub1 == [(b"sdk-project/churn/1", "Prediction"), (b"sdk-project/churn/1", "Label")]
    assert [e for e in out1 if e.topic == DLQ_TOPIC][0].headers[ERROR_HEADER].startswith(b"invalid prediction")
    pub2 = [type(envelope.decode(e.value)).__name__ for e in out2 if e.topic == PREDICTIONS_TOPIC]
    assert pub2 == ["Prediction", "Label", "ReferenceFeature"]


def test_undecodable_message_goes_to_dlq_and_batch_continues(sink, storage):
    good = request([{"trace_id": "12" * 16, "span_id": "34" * 8, "name": "ok"}])
    emits = sink.handle([msg(b"\xff\xfe not protobuf", offset=7), msg(good, offset=8)])
    (dlq,) = emits
    assert dlq.topic == DLQ_TOPIC and dlq.value == b"\xff\xfe not protobuf"
    assert dlq.headers[ERROR_HEADER].startswith(b"not an OTLP ExportTraceServiceRequest")
    assert dlq.key == b"otlp.traces/0/7"
    assert storage.scalar("SELECT count() FROM spans") == 1


def test_replayed_batch_is_deduplicated_at_insert(sink, storage):
    batch = [msg(request([{"trace_id": "56" * 16, "span_id": f"{i:016x}", "name": "s"} for i in range(50)]),
                 offset=o, partition=o % 2) for o in range(4)]
    sink.handle(batch)
    sink.handle(batch)  # the runner re-delivers after a crash before commit
    assert storage.scalar("SELECT count() FROM spans") == 50  # dropped by the token, even without FINAL
    assert storage.scalar("SELECT count() FROM spans FINAL") == 50


def test_metrics_and_logs(sink, storage):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from tests.test_sink_builders import kv
    mreq = ExportMetricsServiceRequest()
    sm = mreq.resource_metrics.add()
    sm.resource.attributes.append(kv("service.name", "api"))
    scope = sm.scope_metrics.add()
    g = scope.metrics.add(name="queue.depth")
    g.gauge.data_points.add(time_unix_nano=T0, as_int=5)
    s = scope.metrics.add(name="requests")
    s.sum.is_monotonic = True
    s.sum.aggregation_temporality = 2
    s.sum.data_points.add(time_unix_nano=T0, as_double=3.5)
    h = scope.metrics.add(name="latency")
    h.histogram.data_points.add(time_unix_nano=T0, count=3, sum=1.5, bucket_counts=[1, 2], explicit_bounds=[0.5])
    e = scope.metrics.add(name="latency.exp")
    dp = e.exponential_histogram.data_points.add(time_unix_nano=T0, count=2, scale=3)
    dp.positive.bucket_counts.extend([1, 1])
    scope.metrics.add(name="summary").summary.data_points.add(time_unix_nano=T0)
    lreq = ExportLogsServiceRequest()
    rl = lreq.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", "api"))
    rec = rl.scope_logs.add().log_records.add(time_unix_nano=T0, severity_text="ERROR", severity_number=17)
    rec.body.string_value = "boom"
    rec.trace_id = bytes.fromhex("77" * 16)
    sink.handle([msg(mreq, topic="otlp.metrics"), msg(lreq, topic="otlp.logs")])
    assert storage.query("SELECT metric_name, value FROM metrics_gauge")[1] == [("queue.depth", 5.0)]
    assert storage.query("SELECT value, is_monotonic FROM metrics_sum")[1] == [(3.5, True)]
    assert storage.query("SELECT count, bucket_counts FROM metrics_histogram")[1] == [(3, [1, 2])]
    assert storage.query("SELECT scale, positive_bucket_counts FROM metrics_exponential_histogram")[1] == [(3, [1, 1])]
    assert storage.query("SELECT body, severity_text, trace_id, tenant, service_name FROM logs")[1] == [
        ("boom", "ERROR", "77" * 16, "acme", "api")]


def test_clickhouse_unavailable_raises_retryable_then_nothing_lost(sink, storage):
    """A real ClickHouse failure (the table is gone) → RetryableError, no partial state; once it is back the
    same batch (re-delivered by the runner) is stored completely."""
    batch = [msg(request([{"trace_id": "99" * 16, "span_id": f"{i:016x}", "name": "s"} for i in range(20)]))]
    storage.command("RENAME TABLE spans TO spans_away")
    try:
        with pytest.raises(RetryableError, match="spans"):
            sink.handle(batch)
    finally:
        storage.command("RENAME TABLE spans_away TO spans")
    sink.handle(batch)
    assert storage.scalar("SELECT count() FROM spans FINAL") == 20


def test_price_table_override_and_lookup(tmp_path, monkeypatch):
    from orbitwatch.processors.sink.prices import PriceTableError
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"my-model": {"input": 1.0, "output": 2.0}, "gpt-4o": [0, 0]}))
    monkeypatch.setenv("ORBITWATCH_PRICES", str(f))
    table = PriceTable.load()
    assert table.cost("my-model", 1_000_000, 1_000_000) == 3.0
    assert table.cost("openai/gpt-4o-2024-08-06", 10, 10) == 0.0  # override wins; prefix + provider strip
    assert table.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)  # longest prefix, not gpt-4o
    assert table.cost("unknown", 1, 1) is None
    f.write_text('{"bad": "cheap"}')
    with pytest.raises(PriceTableError, match="bad"):
        PriceTable.load()


def _log_request(ts: int, body: str):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    req = ExportLogsServiceRequest()
    rec = req.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=ts)
    rec.body.string_value = body
    return req


def test_rows_clickhouse_refuses_raise_a_non_retryable_data_error(sink, storage):
    """A value no ClickHouse column can hold (a log time past 2262) is a data error, not an outage:
    retrying could never succeed, so the runner must not back off forever but DLQ the message."""
    from orbitwatch.processors.sink import SinkDataError
    with pytest.raises(SinkDataError, match="logs"):
        sink.handle([msg(_log_request(2**64 - 1, "from the far future"), topic="otlp.logs")])
    sink.handle([msg(_log_request(T0, "fine"), topic="otlp.logs", offset=1)])
    assert storage.query("SELECT body FROM logs")[1] == [("fine",)]


def test_surrogates_smuggled_through_json_tags_are_stored_not_fatal(sink, storage):
    spans = [{"trace_id": "98" * 16, "span_id": "76" * 8, "name": "s",
              "attrs": {A.TAGS: '["ok", "bad\\ud800"]', A.SESSION_ID: "s1"}}]
    sink.handle([msg(request(spans))])
    assert list(storage.scalar("SELECT tags FROM spans FINAL")) == ["ok", "bad?"]


def test_span_without_start_time_is_kept(sink, storage):
    """start_time_unix_nano = 0 would be 1970: under the TTL ClickHouse would drop it silently."""
    sink.handle([msg(request([{"trace_id": "31" * 16, "span_id": "41" * 8, "name": "s", "start": 0,
                               "end": T0}]))])
    assert storage.scalar("SELECT toUnixTimestamp64Nano(timestamp) FROM spans") == T0


def test_large_reference_is_published_as_a_quantile_sample_that_fits_one_message():
    import numpy as np

    from orbitwatch.processors.sink import MAX_PUBLISHED_REFERENCE_VALUES, quantile_sample
    from orbitwatch.schemas import envelope
    from orbitwatch.schemas import records as r

    values = np.random.default_rng(1).normal(size=300_000)
    ref = r.ReferenceFeature(model="m", feature="x", kind="numeric", numeric_values=values.tolist())
    small = quantile_sample(ref)
    assert len(small.numeric_values) == MAX_PUBLISHED_REFERENCE_VALUES
    assert len(envelope.encode(small)) < 1_000_000
    assert small.numeric_values[0] == values.min() and small.numeric_values[-1] == values.max()
    from scipy.stats import ks_2samp
    assert ks_2samp(values, small.numeric_values).statistic < 1e-4
    cats = r.ReferenceFeature(model="m", feature="c", kind="categorical",
                              categorical_values=["a"] * 90_000 + ["b"] * 10_000)
    shares = quantile_sample(cats).categorical_values
    assert abs(shares.count("b") / len(shares) - 0.1) < 1e-3
    tiny = r.ReferenceFeature(model="m", feature="x", kind="numeric", numeric_values=[1.0, 2.0])
    assert quantile_sample(tiny) is tiny
