"""The faust worker over a real Kafka broker and a real embedded ClickHouse (chdb).

* our SDK (``@track``) → the real gateway → Kafka → worker → ``spans`` with the LLM columns;
* ``orbitwatch worker`` SIGKILLed mid-stream and restarted: every span exactly once under FINAL,
  and an undecodable message in between lands in the DLQ while the next ones are stored;
* ClickHouse unavailable (the ``spans`` table taken away — a real ClickHouse error, no test double)
  and restored: nothing lost, offsets not committed meanwhile;
* processor state survives a runner restart through the changelog-backed faust table.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from orbitwatch.ingest.kafka_admin import create_topics
from orbitwatch.processors.runners.faust_app import FaustRunner, app_id
from orbitwatch.processors.sink import ERROR_HEADER, SinkProcessor
from orbitwatch.schemas import attributes as A
from tests.test_sink_builders import request
from tests.waiting import until

pytestmark = pytest.mark.kafka


async def _producer(bootstrap: str):
    from aiokafka import AIOKafkaProducer
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await p.start()
    return p


def _traces(i: int, n: int = 10) -> bytes:
    return request([{"trace_id": f"{i:032x}", "span_id": f"{i:08x}{j:08x}", "name": f"op{j % 3}"}
                    for j in range(n)]).SerializeToString()


async def _end_offsets(bootstrap: str, topic: str) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic) or set()
        if not parts:
            await c._client.force_metadata_update()
            parts = c.partitions_for_topic(topic) or set()
        return await c.end_offsets([TopicPartition(topic, p) for p in parts])
    finally:
        await c.stop()


async def _committed(bootstrap: str, group: str, tps) -> dict:
    from aiokafka import AIOKafkaConsumer
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        return {tp: (await c.committed(tp)) or 0 for tp in tps}
    finally:
        await c.stop()


async def _wait_committed(bootstrap: str, group: str, topic: str, at_least: int | None = None,
                          timeout: float = 60) -> dict:
    """Wait until the group committed everything (or at least ``at_least`` messages in total)."""
    deadline = time.monotonic() + timeout
    ends = await _end_offsets(bootstrap, topic)
    while True:
        got = await _committed(bootstrap, group, ends)
        total = sum(got.values())
        if (at_least is not None and total >= at_least) or (at_least is None and got == ends):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"group {group} committed {got}, end offsets {ends}")
        await asyncio.sleep(0.3)


async def _read_all(bootstrap: str, topic: str, expect: int, timeout: float = 20) -> list:
    from aiokafka import AIOKafkaConsumer
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await c.start()
    out: list = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=500)
            for recs in batch.values():
                out.extend(recs)
    finally:
        await c.stop()
    return out


def _scrape(port: int) -> str:
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def _worker(bootstrap: str, prefix: str, tmp_path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, ORBITWATCH_TOPIC_PREFIX=prefix)
    return subprocess.Popen(
        [sys.executable, "-m", "orbitwatch.cli", "worker", "--kafka", bootstrap, "--only", "sink",
         "--clickhouse", f"chdb://{tmp_path / 'ch'}", "--data-dir", str(tmp_path / "data"),
         "--batch-size", "25", "--batch-seconds", "0.2", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "ab"))


async def test_worker_sigkill_mid_stream_then_restart_stores_every_span_once_and_dlq(kafka, unique, tmp_path):
    prefix = f"t{unique}."
    topic = f"{prefix}otlp.traces"
    group = f"{prefix}orbitwatch-sink"
    await create_topics(kafka.bootstrap, prefix=prefix, partitions=3)
    producer = await _producer(kafka.bootstrap)
    try:
        poison_after = 40
        for i in range(120):  # 1200 spans in the first wave, one undecodable message in the middle
            await producer.send(topic, _traces(i), key=f"{i:032x}".encode(), headers=[(A.TENANT_HEADER, b"t1")])
            if i == poison_after:
                await producer.send(topic, b"\x0a\xff garbage", key=b"poison", headers=[(A.TENANT_HEADER, b"t1")])
        await producer.flush()
        worker = _worker(kafka.bootstrap, prefix, tmp_path)
        try:
            # kill as soon as some (not all) batches are committed: mid-stream, with work in flight
            await _wait_committed(kafka.bootstrap, group, topic, at_least=30, timeout=90)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        for i in range(120, 200):  # second wave while no worker runs
            await producer.send(topic, _traces(i), key=f"{i:032x}".encode(), headers=[(A.TENANT_HEADER, b"t1")])
        await producer.flush()
        from tests.conftest import free_port
        port = free_port()
        worker = _worker(kafka.bootstrap, prefix, tmp_path, "--metrics-port", str(port))
        try:
            await _wait_committed(kafka.bootstrap, group, topic, timeout=90)
            metrics = await _until(lambda: (lambda t: t if "orbitwatch_worker_consumer_lag{" in t else None)(
                _scrape(port)), timeout=20)
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        dlq = await _read_all(kafka.bootstrap, f"{prefix}orbitwatch.dlq", 1)
    finally:
        await producer.stop()

    # Prometheus: rows per table, batch latency, consumer lag (drained: 0) are served by the worker
    assert 'orbitwatch_sink_rows_written_total{table="spans"}' in metrics
    assert "orbitwatch_sink_batch_seconds_count" in metrics
    assert 'orbitwatch_worker_consumer_lag{partition="0",processor="sink",topic="otlp.traces"} 0.0' in metrics
    assert len(dlq) >= 1 and all(r.value == b"\x0a\xff garbage" for r in dlq)  # ≥: a replay may repeat it
    headers = dict(dlq[0].headers)
    assert headers[ERROR_HEADER].startswith(b"not an OTLP ExportTraceServiceRequest")
    from orbitwatch.storage import Storage
    st = Storage(f"chdb://{tmp_path / 'ch'}")  # the worker has exited: the directory is ours now
    try:
        assert st.scalar("SELECT count() FROM spans FINAL") == 2000
        assert st.scalar("SELECT uniqExact(trace_id, span_id) FROM spans") == 2000
        assert st.scalar("SELECT countIf(tenant != 't1') FROM spans") == 0
    finally:
        st.close()


@pytest.fixture
async def runner_env(kafka, unique, storage, tmp_path):
    prefix = f"t{unique}."
    await create_topics(kafka.bootstrap, prefix=prefix, partitions=2)
    producer = await _producer(kafka.bootstrap)
    yield prefix, producer
    await producer.stop()


def _runner(kafka, prefix, storage, tmp_path, **kw) -> FaustRunner:
    return FaustRunner([SinkProcessor(storage)], bootstrap=kafka.bootstrap, topic_prefix=prefix, batch_size=50,
                       batch_seconds=0.1, datadir=str(tmp_path / "faust"), max_backoff=0.5, **kw)


_until = until


async def test_clickhouse_unavailable_then_restored_loses_nothing(kafka, runner_env, storage, tmp_path):
    prefix, producer = runner_env
    topic = f"{prefix}otlp.traces"
    runner = _runner(kafka, prefix, storage, tmp_path, lag_interval=0.2)
    await runner.start()
    try:
        for i in range(10):
            await producer.send(topic, _traces(i), key=f"{i:032x}".encode())
        await producer.flush()
        await _until(lambda: storage.scalar("SELECT count() FROM spans") == 100)
        # ClickHouse "goes away" for the spans table: inserts fail with UNKNOWN_TABLE
        storage.command("RENAME TABLE spans TO spans_offline")
        for i in range(10, 60):
            await producer.send(topic, _traces(i), key=f"{i:032x}".encode())
        await producer.flush()
        from orbitwatch.processors.runners.faust_app import LAG, RETRIES
        await _until(lambda: RETRIES.labels("sink")._value.get() >= 2)  # the runner is backing off
        # the consumer-lag gauge shows the backlog that builds up meanwhile
        await _until(lambda: sum(LAG.labels("sink", "otlp.traces", str(p))._value.get() for p in (0, 1)) > 0)
        committed = await _committed(kafka.bootstrap, runner.id, await _end_offsets(kafka.bootstrap, topic))
        assert sum(committed.values()) <= 10  # nothing beyond the stored batches was committed
        storage.command("RENAME TABLE spans_offline TO spans")
        await _until(lambda: storage.scalar("SELECT count() FROM spans FINAL") == 600)
        await _wait_committed(kafka.bootstrap, runner.id, topic, timeout=30)
    finally:
        await runner.stop()
    assert storage.scalar("SELECT count() FROM spans FINAL") == 600


async def test_state_snapshot_survives_runner_restart(kafka, runner_env, storage, tmp_path, unique):
    """Pending reference chunks live in sink state; a new runner (new process in production) restores them
    from the changelog-backed table and completes the reference when the last chunk arrives."""
    from datetime import datetime, timezone

    from orbitwatch.schemas import records as r
    prefix, producer = runner_env
    topic = f"{prefix}otlp.traces"
    ts = datetime(2026, 1, 1, tzinfo=timezone.utc)
    chunks = [r.ReferenceFeature(model="m", feature="f", kind="numeric", numeric_values=[float(i)], created_at=ts)
              for i in range(2)]

    def ref_msg(i: int) -> bytes:
        return request([{"trace_id": "ab" * 16, "span_id": f"{i + 1:016x}", "name": "predictions",
                         "attrs": {A.KIND: "prediction.batch"},
                         "events": [{"name": "reference", "attrs": {A.PAYLOAD: chunks[i].model_dump_json(),
                                                                    "chunk": i, "chunks": 2}}]}]).SerializeToString()

    runner = _runner(kafka, prefix, storage, tmp_path, instance=unique)
    await runner.start()
    try:
        await producer.send_and_wait(topic, ref_msg(0), key=b"ref")
        await _wait_committed(kafka.bootstrap, runner.id, topic, timeout=30)
        await asyncio.sleep(0.5)  # the state write is queued with the batch; let the producer deliver it
    finally:
        await runner.stop()
    assert storage.scalar("SELECT count() FROM reference_features") == 0

    runner = _runner(kafka, prefix, storage, tmp_path, instance=unique)
    await runner.start()
    try:
        await producer.send_and_wait(topic, ref_msg(1), key=b"ref")
        await _until(lambda: storage.scalar("SELECT count() FROM reference_features FINAL") == 1)
    finally:
        await runner.stop()
    assert list(storage.scalar("SELECT numeric_values FROM reference_features FINAL")) == [0.0, 1.0]


async def test_sdk_track_through_gateway_to_llm_columns(kafka, runner_env, storage, tmp_path):
    """Our SDK's @track spans, exported over OTLP/gRPC to the real gateway, land with the LLM columns."""
    import orbitwatch
    from orbitwatch.ingest.auth import Auth
    from orbitwatch.ingest.gateway import Gateway
    from orbitwatch.ingest.publisher import KafkaPublisher

    prefix, _ = runner_env
    auth = Auth.from_mapping({"keys": [{"key": "secret-key-1", "tenant": "acme", "project": "shop"}]})
    gw = Gateway(KafkaPublisher(kafka.bootstrap, topic_prefix=prefix), auth, grpc_port=0, http_port=None)
    await gw.start()
    runner = _runner(kafka, prefix, storage, tmp_path)
    await runner.start()
    try:
        orbitwatch.configure(endpoint=f"http://127.0.0.1:{gw.grpc_port}", api_key="secret-key-1", project="ignored")

        @orbitwatch.track(type="llm")
        def ask(question: str) -> str:
            orbitwatch.update_current_span(model="gpt-4o-mini", provider="openai",
                                           usage={"prompt_tokens": 1000, "completion_tokens": 100},
                                           context=["doc"], feedback_scores=[{"name": "helpful", "value": 1.0}])
            orbitwatch.update_current_trace(session_id="sess-1", user_id="u1",
                                            feedback_scores=[{"name": "thumbs", "value": 0.0, "reason": "meh"}])
            return "answer"

        @orbitwatch.track(name="pipeline")
        def pipeline() -> str:
            return ask("why?")

        pipeline()
        assert await asyncio.get_running_loop().run_in_executor(None, orbitwatch.flush, 10.0)
        rows = {r["span_name"]: r for r in await _until(
            lambda: (lambda x: x if len(x) == 2 else None)(storage.query_dicts("SELECT * FROM spans FINAL")))}
        scores = await _until(lambda: (lambda x: x if len(x) == 2 else None)(storage.query_dicts(
            "SELECT entity_type, entity_id, name, value, reason, source, tenant, project FROM eval_scores FINAL "
            "ORDER BY name")))
    finally:
        await runner.stop()
        await gw.stop(grace=1)
    llm = rows["ask"]
    assert (llm["span_type"], llm["model"], llm["provider"]) == ("llm", "gpt-4o-mini", "openai")
    assert (llm["input_tokens"], llm["output_tokens"]) == (1000, 100)
    assert llm["cost"] == pytest.approx(1000 * 0.15 / 1e6 + 100 * 0.6 / 1e6)
    assert "why?" in llm["input"] and "answer" in llm["output"]
    assert (llm["session_id"], llm["user_id"], llm["tenant"], llm["project"]) == ("sess-1", "u1", "acme", "shop")
    assert rows["pipeline"]["span_type"] == "general" and llm["parent_span_id"] == rows["pipeline"]["span_id"]
    # span feedback (attribute on the span) and trace feedback (a `feedback` record span) → eval_scores
    assert [(s["entity_type"], s["entity_id"], s["name"], s["value"], s["source"], s["tenant"]) for s in scores] == [
        ("span", llm["span_id"], "helpful", 1.0, "sdk", "acme"), ("trace", llm["trace_id"], "thumbs", 0.0, "sdk", "acme")]
    # the LLM span was re-published for the evals processor, keyed by trace id, tenant in the header
    from orbitwatch.schemas import envelope
    (rec,) = await _read_all(kafka.bootstrap, f"{prefix}orbitwatch.llm_spans", 1)
    span = envelope.decode(rec.value)
    assert (span.span_name, span.model, span.input_tokens) == ("ask", "gpt-4o-mini", 1000)
    assert rec.key == llm["trace_id"].encode() and dict(rec.headers)[A.TENANT_HEADER] == b"acme"


def test_worker_cli_rejects_unknown_processor_with_one_line(orbitwatch_cli, kafka, tmp_path):
    out = orbitwatch_cli("worker", "--kafka", kafka.bootstrap, "--clickhouse", f"chdb://{tmp_path / 'ch'}",
                         "--data-dir", str(tmp_path), "--only", "sink,nope", "--no-create-topics")
    assert out.returncode == 2 and "unknown processor(s) nope" in out.stderr and "Traceback" not in out.stderr


def test_registry_builds_known_processors_and_rejects_unknown(storage):
    from orbitwatch.config import load_settings
    from orbitwatch.processors.registry import UnknownProcessorError, build_processors
    settings = load_settings(project="p")
    (sink,) = build_processors(settings, storage, {"sink"})
    assert sink.name == "sink" and sink.topics == ("otlp.traces", "otlp.metrics", "otlp.logs")
    with pytest.raises(UnknownProcessorError, match="nope"):
        build_processors(settings, storage, {"nope"})
    assert app_id([sink], "x.") == "x.orbitwatch-sink"


async def test_sdk_experiment_and_monitored_model_through_gateway(kafka, runner_env, storage, tmp_path):
    """Our SDK's Experiment and MonitoredModel → gateway → Kafka → sink → experiment and monitoring tables."""
    import orbitwatch
    from orbitwatch.ingest.auth import Auth
    from orbitwatch.ingest.gateway import Gateway
    from orbitwatch.ingest.publisher import KafkaPublisher

    prefix, _ = runner_env
    gw = Gateway(KafkaPublisher(kafka.bootstrap, topic_prefix=prefix), Auth.disabled(), grpc_port=0, http_port=None)
    await gw.start()
    runner = _runner(kafka, prefix, storage, tmp_path)
    await runner.start()
    loop = asyncio.get_running_loop()
    try:
        orbitwatch.configure(endpoint=f"http://127.0.0.1:{gw.grpc_port}", project="exp-project")

        def work() -> str:
            exp = orbitwatch.Experiment(experiment_name="baseline", tags=["a"])
            for step in range(5):
                exp.log_metric("loss", 1.0 / (step + 1), step=step)
            exp.log_metric("loss", 9.9, step=0)  # a second point at the same step is kept
            exp.log_parameter("lr", 0.01)
            exp.add_tag("b")
            exp.end()
            model = orbitwatch.MonitoredModel("churn", "v1")
            model.set_reference({"age": [20.0, 30.0, 40.0]})
            model.log_prediction("p1", {"age": 33.0, "plan": "pro"}, "yes")
            model.flush()
            model.log_label("p1", "no")
            model.flush()
            orbitwatch.flush(10.0)
            return exp.get_key()

        key = await loop.run_in_executor(None, work)
        await _until(lambda: storage.scalar("SELECT count() FROM predictions FINAL WHERE label = 'no'") == 1)
        await _until(lambda: storage.scalar(
            "SELECT count() FROM experiments FINAL WHERE status = 'finished'") == 1)
    finally:
        await runner.stop()
        await gw.stop(grace=1)
    (exp,) = storage.query_dicts("SELECT * FROM experiments FINAL")
    assert (exp["experiment_id"], exp["name"], exp["project"]) == (key, "baseline", "exp-project")
    assert sorted(exp["tags"]) == ["a", "b"]
    assert storage.scalar("SELECT count() FROM experiment_metrics FINAL WHERE name = 'loss'") == 6
    assert storage.query("SELECT name, value FROM experiment_params FINAL")[1] == [("lr", "0.01")]
    (pred,) = storage.query_dicts("SELECT * FROM predictions FINAL")
    assert (pred["model"], pred["model_version"], pred["prediction"], pred["label"]) == ("churn", "v1", "yes", "no")
    assert list(storage.scalar("SELECT numeric_values FROM reference_features FINAL WHERE feature = 'age'")) == [
        20.0, 30.0, 40.0]
    # drift gets reference, prediction and label envelopes keyed project/model/version
    from orbitwatch.schemas import envelope
    recs = await _read_all(kafka.bootstrap, f"{prefix}orbitwatch.predictions", 3)
    assert sorted(type(envelope.decode(x.value)).__name__ for x in recs) == ["Label", "Prediction", "ReferenceFeature"]
    assert {x.key for x in recs} == {b"exp-project/churn/v1"}


async def test_runner_dlqs_the_one_message_clickhouse_refuses_and_stores_the_rest(kafka, runner_env, storage,
                                                                                   tmp_path):
    from tests.test_sink import _log_request
    from tests.test_sink_builders import NOW_NS
    prefix, producer = runner_env
    topic = f"{prefix}otlp.logs"
    runner = _runner(kafka, prefix, storage, tmp_path)
    await runner.start()
    try:
        for ts, body in ((NOW_NS, "one"), (2**64 - 1, "poison"), (NOW_NS, "two")):
            await producer.send(topic, _log_request(ts, body).SerializeToString(), key=b"svc", partition=0)
        await producer.flush()
        await _until(lambda: storage.scalar("SELECT count() FROM logs") == 2)
        (dead,) = await _read_all(kafka.bootstrap, f"{prefix}orbitwatch.dlq", 1)
        await _wait_committed(kafka.bootstrap, runner.id, topic, timeout=30)
    finally:
        await runner.stop()
    assert sorted(r[0] for r in storage.query("SELECT body FROM logs")[1]) == ["one", "two"]
    assert dict(dead.headers)[ERROR_HEADER].startswith(b"sink failed: SinkDataError: logs")
    assert dead.key == b"otlp.logs/0/1"


class _BigStateProcessor:
    """A processor whose state is larger than one Kafka message (like drift with many features):
    the runner must persist it key by key and give it back whole after a restart."""

    name = "bigstate"
    topics = ("otlp.logs",)

    def __init__(self) -> None:
        self.state: dict[str, str] = {}

    def handle(self, batch):
        for m in batch:
            self.state[m.value.decode()] = m.value.decode() * (700_000 // len(m.value))
        return []

    def tick(self, now):
        return []

    def snapshot(self):
        return dict(self.state)

    def restore(self, state):
        self.state = dict(state)


async def test_state_larger_than_a_kafka_message_survives_restart(kafka, runner_env, tmp_path, unique):
    prefix, producer = runner_env
    topic = f"{prefix}otlp.logs"

    def runner(proc):
        return FaustRunner([proc], bootstrap=kafka.bootstrap, topic_prefix=prefix, batch_size=10,
                           batch_seconds=0.1, datadir=str(tmp_path / "faust"), instance=unique)

    first = _BigStateProcessor()
    r1 = runner(first)
    await r1.start()
    try:
        for key in ("alpha", "beta", "gamma"):  # 3 x 700 KB: 2.1 MB of state, each key < 1 MB
            await producer.send_and_wait(topic, key.encode(), key=key.encode())
        await _wait_committed(kafka.bootstrap, r1.id, topic, timeout=30)
        await asyncio.sleep(1.0)  # let the changelog writes of the last batch go out
    finally:
        await r1.stop()
    assert len(first.state) == 3

    second = _BigStateProcessor()
    r2 = runner(second)
    await r2.start()
    try:
        await producer.send_and_wait(topic, b"delta", key=b"delta")
        await _until(lambda: "delta" in second.state)
    finally:
        await r2.stop()
    assert sorted(second.state) == ["alpha", "beta", "delta", "gamma"]
    assert second.state["beta"] == first.state["beta"]


async def test_big_prediction_flush_through_the_kafka_gateway_arrives_whole(kafka, runner_env, storage, tmp_path):
    """Bulk spans stay under the gateway's Kafka record limit: one flush of 4,000 wide predictions is
    not partially rejected (it was, when the SDK packed up to 1 MB per span)."""
    import orbitwatch
    from orbitwatch.ingest.auth import Auth
    from orbitwatch.ingest.gateway import Gateway
    from orbitwatch.ingest.publisher import KafkaPublisher

    prefix, _ = runner_env
    gw = Gateway(KafkaPublisher(kafka.bootstrap, topic_prefix=prefix), Auth.disabled(), grpc_port=0, http_port=None)
    await gw.start()
    runner = _runner(kafka, prefix, storage, tmp_path)
    await runner.start()
    try:
        orbitwatch.configure(endpoint=f"http://127.0.0.1:{gw.grpc_port}", project="bulk")
        rejected_before = orbitwatch.stats().get("rejected_spans", 0)  # the counter is process-wide

        def work() -> None:
            model = orbitwatch.MonitoredModel("wide", "v1")
            features = {f"feature_{i}": float(i) for i in range(40)}
            for n in range(4000):
                model.log_prediction(f"p{n}", features, "yes", probability=0.5)
            model.flush()
            orbitwatch.flush(20.0)

        await asyncio.get_running_loop().run_in_executor(None, work)
        await _until(lambda: storage.scalar("SELECT count() FROM predictions FINAL WHERE model = 'wide'") == 4000,
                     timeout=60)
    finally:
        await runner.stop()
        await gw.stop(grace=1)
    assert orbitwatch.stats().get("rejected_spans", 0) == rejected_before
