"""The eval processor against the real ClickHouse engine (chdb): joins, rules, scores, emits."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from orbitwatch.processors.base import Message, RetryableError
from orbitwatch.processors.evals import EvalConfig, EvalProcessor, RuleSet, build
from orbitwatch.processors.evals.rules import Rule
from orbitwatch.schemas import envelope
from orbitwatch.schemas.records import EvalScore, SpanRow
from tests.openai_stub import OpenAIStub

T0 = datetime.now(timezone.utc).replace(microsecond=0)  # recent: `spans` has a TTL
DOCS = ["The Eiffel Tower in Paris was completed in 1889 for the World's Fair. It was designed by the "
        "engineering company of Gustave Eiffel and is about 330 metres tall.",
        "The Statue of Liberty was dedicated in 1886 in New York Harbor."]
QUESTION = "When was the Eiffel Tower completed and who designed it?"
GROUNDED = "The Eiffel Tower was completed in 1889 for the World's Fair, and Gustave Eiffel's company designed it."
INVENTED = ("The Eiffel Tower was completed in 1925 by Thomas Edison. It is repainted gold every spring by "
            "volunteers from Lyon.")


def span(trace: str, sid: str, kind: str, inp, out, attrs=None, project="rag", offset_ms=0) -> SpanRow:
    return SpanRow(timestamp=T0 + timedelta(milliseconds=offset_ms), trace_id=trace, span_id=sid,
                   span_name=f"{kind}-call", span_type=kind, project=project, tenant="t1",
                   input=json.dumps(inp), output=json.dumps(out), span_attributes=attrs or {})


def msg(rec, offset=0) -> Message:
    return Message(topic="orbitwatch.llm_spans", value=envelope.encode(rec), key=rec.trace_id.encode(),
                   offset=offset)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store_spans(storage, *rows: SpanRow) -> None:
    """What the sink does before publishing to orbitwatch.llm_spans."""
    cols = ["timestamp", "trace_id", "span_id", "span_name", "span_type", "project", "tenant", "span_attributes",
            "input", "output"]
    storage.insert_rows("spans", cols, [[getattr(r, c) for c in cols] for r in rows])


def scores(storage, trace=None) -> dict[tuple[str, str], dict]:
    where = "WHERE trace_id = {t:String}" if trace else ""
    rows = storage.query_dicts(f"SELECT * FROM eval_scores FINAL {where}", {"t": trace} if trace else None)
    return {(r["entity_id"], r["name"]): r for r in rows}


def test_rag_trace_gets_scores_with_reasons_and_grounded_beats_invented(storage):
    clock = Clock()
    proc = EvalProcessor(storage, RuleSet.default(), EvalConfig(join_wait_s=5), clock=clock)
    batch = []
    for trace, answer in (("a" * 32, GROUNDED), ("b" * 32, INVENTED)):
        batch.append(msg(span(trace, trace[:15] + "r", "retriever", {"query": QUESTION}, DOCS)))
        batch.append(msg(span(trace, trace[:15] + "l", "llm",
                              {"messages": [{"role": "user", "content": QUESTION}]},
                              {"choices": [{"message": {"role": "assistant", "content": answer}}]},
                              offset_ms=10)))
    emits = proc.handle(batch)
    good, bad = scores(storage, "a" * 32), scores(storage, "b" * 32)
    g, b = good[("a" * 15 + "l", "hallucination")], bad[("b" * 15 + "l", "hallucination")]
    assert g["value"] == 0.0 and "supported" in g["reason"]
    assert b["value"] == 1.0 and "1925" in b["reason"] and "thomas edison" in b["reason"]
    assert g["source"] == "online" and g["rule"] == "default" and g["scorer_version"] == "Hallucination/1"
    assert g["tenant"] == "t1" and g["project"] == "rag" and g["entity_type"] == "span"
    assert good[("a" * 15 + "l", "context_precision")]["value"] == 1.0
    assert 0 < good[("a" * 15 + "l", "answer_relevance")]["value"] <= 1
    assert ("a" * 15 + "l", "context_recall") not in good  # no expected answer: not scored
    assert not any(k[0].endswith("r") for k in good)  # retriever spans are context, not scored
    # one Kafka record per score, keyed by trace id, decodable by the alert processor
    assert len(emits) == len(good) + len(bad)
    assert {e.topic for e in emits} == {"orbitwatch.evals"}
    first = envelope.decode(emits[0].value)
    assert isinstance(first, EvalScore) and emits[0].key == first.trace_id.encode()


def test_out_of_order_llm_waits_for_retriever_and_expires_without_context(storage):
    clock = Clock()
    proc = EvalProcessor(storage, RuleSet.default(), EvalConfig(join_wait_s=2), clock=clock)
    trace = "c" * 32
    llm = span(trace, "l1", "llm", {"question": QUESTION}, {"answer": GROUNDED})
    assert proc.handle([msg(llm)]) == []  # parked: no context yet
    assert len(proc.joiner.pending) == 1
    # a restart: the snapshot holds only references; the span is read back from `spans`, where the
    # sink stored it before publishing it
    snap = json.loads(json.dumps(proc.snapshot()))
    assert snap == {"join": {"pending": [["l1", trace, 1000.0]], "dropped": 0}}
    store_spans(storage, llm)
    proc2 = EvalProcessor(storage, RuleSet.default(), EvalConfig(join_wait_s=2), clock=clock)
    proc2.restore(snap)
    clock.now += 1
    emits = proc2.handle([msg(span(trace, "r1", "retriever", {"q": "x"}, [{"page_content": d} for d in DOCS]))])
    assert emits and scores(storage, trace)[("l1", "hallucination")]["value"] == 0.0
    # a lone LLM span without any context: released by tick() after the wait, no context metrics
    lone = span("d" * 32, "l2", "llm", {"question": QUESTION}, {"answer": INVENTED})
    assert proc2.handle([msg(lone)]) == []
    assert proc2.tick(clock.now + 1) == []
    out = proc2.tick(clock.now + 2.5)
    names = {envelope.decode(e.value).name for e in out}
    assert "answer_relevance" in names and "context_precision" not in names
    # hallucination still checks against the question itself (no context): the invented answer fails
    assert scores(storage, "d" * 32)[("l2", "hallucination")]["value"] == 1.0


def test_explicit_context_and_expected_output_on_the_llm_span(storage):
    proc = EvalProcessor(storage, RuleSet.default(), EvalConfig(join_wait_s=60))
    attrs = {"orbitwatch.context": json.dumps(DOCS), "orbitwatch.expected_output": json.dumps(
        "It was completed in 1889 and designed by the company of Gustave Eiffel.")}
    proc.handle([msg(span("e" * 32, "l3", "llm", QUESTION, GROUNDED, attrs))])
    got = scores(storage, "e" * 32)
    assert got[("l3", "context_recall")]["value"] == 1.0
    assert got[("l3", "hallucination")]["value"] == 0.0


def test_openinference_documents_on_a_retriever_span(storage):
    proc = EvalProcessor(storage, RuleSet.default(), EvalConfig(join_wait_s=60))
    attrs = {f"retrieval.documents.{i}.document.content": d for i, d in enumerate(DOCS)}
    proc.handle([msg(span("f" * 32, "r4", "retriever", QUESTION, "", attrs)),
                 msg(span("f" * 32, "l4", "llm", QUESTION, INVENTED))])
    assert scores(storage, "f" * 32)[("l4", "hallucination")]["value"] == 1.0


def test_rules_filter_sampling_scope_and_replay_idempotence(storage):
    rules = RuleSet([
        Rule(name="only-prod", project="prod-*", span_types=["llm"], metrics=["hallucination"], scope="trace"),
        Rule(name="half", span_types=["llm"], sampling=0.5, metrics=["is_json"],
             attributes={"gen_ai.request.model": "gpt-*"}),
    ])
    proc = EvalProcessor(storage, rules, EvalConfig(join_wait_s=0))
    batch = [msg(span(f"{i:032x}", f"s{i}", "llm", QUESTION, '{"a": 1}', {"gen_ai.request.model": "gpt-4o"},
                      project="prod-eu" if i % 2 else "dev"), offset=i) for i in range(200)]
    proc.handle(batch)
    proc.handle(batch)  # re-delivery: same decisions, same rows
    rows = storage.query_dicts("SELECT entity_type, entity_id, name, rule, project FROM eval_scores FINAL")
    trace_rows = [r for r in rows if r["rule"] == "only-prod"]
    assert len(trace_rows) == 100 and all(r["entity_type"] == "trace" and r["project"] == "prod-eu"
                                          for r in trace_rows)
    sampled = [r for r in rows if r["rule"] == "half"]
    assert 70 <= len(sampled) <= 130  # ~50 % of 200
    assert storage.scalar("SELECT count() FROM eval_scores FINAL WHERE rule = 'half'") == len(sampled)


def test_bad_envelope_goes_to_dlq_and_the_rest_is_scored(storage):
    proc = EvalProcessor(storage, RuleSet.default(), EvalConfig(join_wait_s=60))
    good = msg(span("9" * 32, "l9", "llm", QUESTION, GROUNDED, {"orbitwatch.context": json.dumps(DOCS)}))
    emits = proc.handle([Message(topic="orbitwatch.llm_spans", value=b"{nope", offset=7), good])
    dlq = [e for e in emits if e.topic == "orbitwatch.dlq"]
    assert len(dlq) == 1 and dlq[0].key == b"orbitwatch.llm_spans/0/7"
    assert b"not an orbitwatch envelope" in dlq[0].headers["orbitwatch-error"]
    assert any(e.topic == "orbitwatch.evals" for e in emits)


def test_storage_failure_is_retryable_and_keeps_scores(storage, tmp_path):
    proc = EvalProcessor(storage, RuleSet.default(), EvalConfig(join_wait_s=60))
    storage.command("RENAME TABLE eval_scores TO eval_scores_away")
    try:
        with pytest.raises(RetryableError):
            proc.handle([msg(span("8" * 32, "l8", "llm", QUESTION, GROUNDED,
                                  {"orbitwatch.context": json.dumps(DOCS)}))])
    finally:
        storage.command("RENAME TABLE eval_scores_away TO eval_scores")
    assert proc.tick(0) and scores(storage, "8" * 32)[("l8", "hallucination")]["value"] == 0.0


def test_judge_rule_runs_off_the_hot_path(storage):
    with OpenAIStub() as stub:
        stub.delay_s = 0.6
        from orbitwatch.processors.evals.judge_client import JudgeClient, JudgeConfig
        judge = JudgeClient(JudgeConfig(base_url=stub.base_url, model="m", timeout_s=2))
        rules = RuleSet([Rule(name="j", metrics=["judge_hallucination", "hallucination"])], judge=judge)
        proc = EvalProcessor(storage, rules, EvalConfig(join_wait_s=60, judge_concurrency=4))
        import time
        t = time.monotonic()
        emits = proc.handle([msg(span("7" * 32, f"l{i}", "llm", QUESTION, "INVENTED " + INVENTED,
                                      {"orbitwatch.context": json.dumps(DOCS)})) for i in range(4)])
        assert time.monotonic() - t < 0.6  # handle did not wait for the judge (each call takes 0.6 s)
        assert {envelope.decode(e.value).name for e in emits} == {"hallucination"}
        proc.wait_judge(5)
        later = proc.tick(0)
        assert len(later) == 4
        row = scores(storage, "7" * 32)[("l0", "judge_hallucination")]
        assert row["value"] == 0.9 and row["scorer_version"] == "JudgeMetric/1/m"


def test_build_from_environment(monkeypatch, tmp_path, storage):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: r1\n    metrics: [hallucination, {name: regex_match, params: {pattern: x}}]\n")
    monkeypatch.setenv("ORBITWATCH_EVAL_RULES", str(rules))
    proc = build(None, storage)
    assert [m.name for m in proc.rules.rules[0].metrics] == ["hallucination", "regex_match"]
    monkeypatch.delenv("ORBITWATCH_EVAL_RULES")
    monkeypatch.setenv("ORBITWATCH_EVAL_DEFAULT", "off")
    assert build(None, storage).rules.rules == []
    from orbitwatch.processors.evals.rules import RulesError
    rules.write_text("rules:\n  - name: r1\n    metrics: [nonsense]\n")
    monkeypatch.setenv("ORBITWATCH_EVAL_RULES", str(rules))
    with pytest.raises(RulesError, match="unknown metric 'nonsense'"):
        build(None, storage)


def test_registry_builds_the_eval_processor(storage):
    from orbitwatch.config import load_settings
    from orbitwatch.processors.base import Processor
    from orbitwatch.processors.registry import build_processors
    (proc,) = build_processors(load_settings(project="p"), storage, {"evals"})
    assert isinstance(proc, Processor) and proc.name == "evals" and proc.topics == ("orbitwatch.llm_spans",)


def test_restart_rehydrates_waiting_span_and_its_trace_context_from_clickhouse(storage):
    """Retriever arrived before the restart, the LLM span was still waiting: both come back from `spans`."""
    clock = Clock()
    trace = "5" * 32
    llm = span(trace, "l5", "llm", {"question": QUESTION}, {"answer": INVENTED})
    ret = span(trace, "r5", "retriever", QUESTION, DOCS, offset_ms=-5)
    store_spans(storage, llm, ret)
    proc = EvalProcessor(storage, RuleSet.default(), EvalConfig(join_wait_s=2), clock=clock)
    proc.restore({"join": {"pending": [["l5", trace, clock.now], ["gone", "6" * 32, clock.now]], "dropped": 0}})
    assert proc.tick(clock.now) == []  # re-loaded and still waiting
    assert list(proc.joiner.pending) == ["l5"] and proc.joiner.trace_context(trace) == DOCS
    out = proc.tick(clock.now + 3)
    assert out and scores(storage, trace)[("l5", "hallucination")]["value"] == 1.0
    assert "context_precision" in {envelope.decode(e.value).name for e in out}  # scored with the documents


def test_join_bounds(storage):
    from orbitwatch.processors.evals.join import TraceJoiner
    j = TraceJoiner(wait_s=10, max_pending=2, max_traces=2, max_context_chars=100, max_total_chars=150)
    released = [r for i in range(3) for r in j.add_llm(span(f"t{i}", f"s{i}", "llm", "q", "a"), [], 0.0)]
    assert [r.span.span_id for r in released] == ["s0"] and released[0].reason == "overflow"
    j.add_context("a", "r1", 0, ["x" * 80], 0.0)
    j.add_context("a", "r2", 0, ["y" * 80], 0.0)  # over the per-trace cap: not kept
    assert j.trace_context("a") == ["x" * 80]
    j.add_context("b", "r3", 0, ["z" * 80], 0.0)  # 160 chars in total > 150: least recent trace dropped
    assert "a" not in j.contexts and j.total_chars == 80
    j.add_context("c", "r4", 0, ["w"], 0.0)
    j.add_context("d", "r5", 0, ["v"], 0.0)  # max_traces = 2
    assert list(j.contexts) == ["c", "d"]


def test_rules_stored_through_the_api_are_picked_up(storage):
    from fastapi.testclient import TestClient

    from orbitwatch.api.app import create_app
    client = TestClient(create_app(storage))
    bad = client.put("/api/v1/eval-rules/strict", json={"metrics": ["halucination"]})
    assert bad.status_code == 400 and "unknown metric 'halucination'" in bad.json()["detail"]
    assert client.put("/api/v1/eval-rules/strict", json={"name": "other", "metrics": ["is_json"]}).status_code == 400
    assert client.post("/api/v1/eval-rules/validate", json={"name": "v", "metrics": ["judge_hallucination"]}
                       ).json()["valid"] is True
    ok = client.put("/api/v1/eval-rules/strict", json={"project": "rag", "metrics": ["regex_match"]})
    assert ok.status_code == 400  # regex_match needs a pattern: compiled before storing
    ok = client.put("/api/v1/eval-rules/strict", json={"project": "rag", "metrics": [
        {"name": "regex_match", "params": {"pattern": "Eiffel"}}]})
    assert ok.status_code == 200, ok.text
    assert [r["name"] for r in client.get("/api/v1/eval-rules").json()["items"]] == ["strict"]

    clock = Clock()
    proc = EvalProcessor(storage, RuleSet.default(), EvalConfig(join_wait_s=60, rules_refresh_s=5), clock=clock)
    llm = span("4" * 32, "l4x", "llm", QUESTION, GROUNDED, {"orbitwatch.context": json.dumps(DOCS)})
    names = {envelope.decode(e.value).name for e in proc.handle([msg(llm)])}
    assert "regex_match" in names and "hallucination" in names  # file/default rule + stored rule
    assert client.delete("/api/v1/eval-rules/strict").json() == {"deleted": True}
    assert client.delete("/api/v1/eval-rules/strict").status_code == 404
    proc.tick(clock.now + 1)  # not yet refreshed
    assert [c.rule.name for c in proc.rules.rules] == ["default", "strict"]
    proc.tick(clock.now + 6)
    assert [c.rule.name for c in proc.rules.rules] == ["default"]
