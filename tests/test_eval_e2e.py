"""End to end through a real broker and chdb: a RAG trace sent with ``@track`` (retriever span +
llm span) → gateway → Kafka → sink → ``orbitwatch.llm_spans`` → eval processor → ``eval_scores``
(and ``orbitwatch.evals``), both processors driven by the faust runner."""
from __future__ import annotations

import asyncio
import time

import pytest

from orbitwatch.ingest.kafka_admin import create_topics
from orbitwatch.processors.evals import EvalConfig, EvalProcessor, RuleSet
from orbitwatch.processors.runners.faust_app import FaustRunner
from orbitwatch.processors.sink import SinkProcessor
from orbitwatch.schemas import envelope
from tests.waiting import until

pytestmark = pytest.mark.kafka

DOCS = ["The Hubble Space Telescope was launched in April 1990 aboard the Space Shuttle Discovery.",
        "A flaw in its main mirror was corrected by astronauts during a servicing mission in December 1993."]
QUESTION = "When was Hubble launched and how was its mirror fixed?"
ANSWERS = {"grounded": "Hubble was launched in April 1990 on Discovery, and astronauts corrected the mirror "
                       "flaw on a servicing mission in December 1993.",
           "invented": "Hubble was launched in March 1986 on Challenger, and Elon Musk replaced the mirror "
                       "with a diamond lens in 2004."}


async def _until(fn, timeout: float = 60.0):
    return await until(fn, timeout=timeout, interval=0.3)


async def test_rag_trace_with_track_gets_online_scores(kafka, unique, storage, tmp_path):
    import orbitwatch
    from aiokafka import AIOKafkaConsumer

    from orbitwatch.ingest.auth import Auth
    from orbitwatch.ingest.gateway import Gateway
    from orbitwatch.ingest.publisher import KafkaPublisher

    prefix = f"t{unique}."
    await create_topics(kafka.bootstrap, prefix=prefix, partitions=2)
    auth = Auth.from_mapping({"keys": [{"key": "eval-key-1", "tenant": "acme", "project": "rag"}]})
    gw = Gateway(KafkaPublisher(kafka.bootstrap, topic_prefix=prefix), auth, grpc_port=0, http_port=None)
    await gw.start()
    evals = EvalProcessor(storage, RuleSet.default(), EvalConfig(join_wait_s=5))
    runner = FaustRunner([SinkProcessor(storage), evals], bootstrap=kafka.bootstrap, topic_prefix=prefix,
                         batch_size=50, batch_seconds=0.1, datadir=str(tmp_path / "faust"), max_backoff=0.5,
                         group="orbitwatch-sink-evals")
    await runner.start()
    consumer = AIOKafkaConsumer(f"{prefix}orbitwatch.evals", bootstrap_servers=kafka.bootstrap,
                                auto_offset_reset="earliest", group_id=f"{prefix}test-evals")
    await consumer.start()
    try:
        orbitwatch.configure(endpoint=f"http://127.0.0.1:{gw.grpc_port}", api_key="eval-key-1", project="rag")

        @orbitwatch.track(type="retriever")
        def retrieve(query: str) -> list[str]:
            return DOCS

        @orbitwatch.track(type="llm")
        def generate(question: str, docs: list[str], kind: str) -> str:
            return ANSWERS[kind]

        @orbitwatch.track(name="rag")
        def rag(kind: str) -> tuple[str, str]:
            docs = retrieve(QUESTION)
            return generate(QUESTION, docs, kind), orbitwatch.get_current_trace_id()

        traces = {kind: rag(kind)[1] for kind in ANSWERS}
        assert await asyncio.get_running_loop().run_in_executor(None, orbitwatch.flush, 10.0)

        def scores():
            rows = storage.query_dicts("SELECT trace_id, name, value, reason, source, tenant, project "
                                       "FROM eval_scores FINAL WHERE name = 'hallucination'")
            return {r["trace_id"]: r for r in rows} if len(rows) == 2 else None

        got = await _until(scores, timeout=90)

        # offline evaluate() traces every task call: its trace reaches `spans` and carries the offline score
        result = await asyncio.get_running_loop().run_in_executor(None, lambda: orbitwatch.evaluate(
            [{"input": {"question": QUESTION}, "context": DOCS}], lambda item: ANSWERS["grounded"],
            ["hallucination"], "e2e-offline", project="rag", storage=storage))
        offline_trace = result.items[0].trace_id
        assert len(offline_trace) == 32
        assert await asyncio.get_running_loop().run_in_executor(None, orbitwatch.flush, 10.0)
        await _until(lambda: storage.scalar("SELECT count() FROM spans FINAL WHERE trace_id = {t:String}",
                                            {"t": offline_trace}), timeout=60)
        emitted = []
        deadline = time.monotonic() + 20
        while len(emitted) < 6 and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                emitted.extend(envelope.decode(r.value) for r in recs)
    finally:
        await consumer.stop()
        await runner.stop()
        await gw.stop(grace=1)
    good, bad = got[traces["grounded"]], got[traces["invented"]]
    assert good["value"] == 0.0 and bad["value"] >= 0.5
    assert "unsupported" in bad["reason"] and ("1986" in bad["reason"] or "elon musk" in bad["reason"])
    assert (good["source"], good["tenant"], good["project"]) == ("online", "acme", "rag")
    ctx = storage.query_dicts("SELECT trace_id, value FROM eval_scores FINAL WHERE name = 'context_precision'")
    assert {r["trace_id"] for r in ctx} == set(traces.values())
    offline = storage.query_dicts("SELECT entity_type, value, source, rule FROM eval_scores FINAL "
                                  "WHERE trace_id = {t:String}", {"t": offline_trace})
    assert offline == [{"entity_type": "trace", "value": 0.0, "source": "offline", "rule": "e2e-offline"}]
    names = {(s.trace_id, s.name) for s in emitted}
    assert (traces["invented"], "hallucination") in names and (traces["grounded"], "answer_relevance") in names
