"""The LLM-judge path against a real local OpenAI-compatible HTTP server (tests/openai_stub.py)."""
from __future__ import annotations

import time

import pytest

from tests.openai_stub import OpenAIStub
from orbitwatch.processors.evals.judge_client import (CircuitBreaker, JudgeClient, JudgeConfig, JudgeError,
                                                      JudgeUnavailable, parse_score)
from orbitwatch.processors.evals.metrics import EvalInput, create


@pytest.fixture
def stub():
    with OpenAIStub() as s:
        yield s


def client(stub: OpenAIStub, **kw) -> JudgeClient:
    cfg = dict(base_url=stub.base_url, model="judge-1", api_key="k", timeout_s=1.0, max_retries=1,
               backoff_s=0.01, breaker_failures=2, breaker_cooldown_s=0.3)
    cfg.update(kw)
    return JudgeClient(JudgeConfig(**cfg))


def test_judge_metric_scores_through_the_endpoint(stub):
    judge = client(stub)
    m = create("judge_hallucination", judge=judge)
    ok = m.score(EvalInput("Q?", "Paris is in France.", ["Paris is the capital of France."]))
    bad = m.score(EvalInput("Q?", "INVENTED: Paris is in Peru.", ["Paris is the capital of France."]))
    assert (ok.value, ok.reason) == (0.1, "grounded")
    assert bad.value == 0.9 and "unsupported" in bad.reason
    body = stub.last_body
    assert body["model"] == "judge-1" and body["response_format"] == {"type": "json_object"}
    assert "CONTEXT:\n[1] Paris is the capital of France." in body["messages"][1]["content"]
    assert not m.higher_is_better


def test_cache_by_prompt_hash(stub):
    judge = client(stub)
    m = create("judge_answer_relevance", judge=judge)
    item = EvalInput("What is 2+2?", "4")
    m.score(item)
    m.score(item)
    assert stub.requests == 1
    m.score(EvalInput("What is 2+3?", "5"))
    assert stub.requests == 2


def test_timeout_then_retry_then_error(stub):
    stub.delay_s = 0.5
    judge = client(stub, timeout_s=0.1, max_retries=1)
    started = time.monotonic()
    with pytest.raises(JudgeError, match="timed out"):
        judge.judge("s", "p")
    assert time.monotonic() - started < 1.0  # 2 attempts x 0.1 s + back-off, never the 0.5 s delay
    assert stub.requests == 2


def test_retry_recovers_from_a_5xx(stub):
    stub.fail_next = 1
    judge = client(stub, max_retries=2)
    assert judge.judge("s", "p") == (0.1, "grounded")
    assert stub.requests == 2


def test_4xx_is_not_retried(stub):
    stub.fail_next, stub.fail_status = 5, 401
    judge = client(stub, max_retries=3)
    with pytest.raises(JudgeError, match="HTTP 401"):
        judge.judge("s", "p")
    assert stub.requests == 1


def test_circuit_breaker_opens_fails_fast_and_recovers(stub):
    stub.fail_next = 100
    judge = client(stub, max_retries=0, breaker_failures=2, breaker_cooldown_s=0.3)
    for _ in range(2):
        with pytest.raises(JudgeError):
            judge.judge("s", "p")
    assert judge.breaker.state == "open"
    seen = stub.requests
    with pytest.raises(JudgeUnavailable):
        judge.judge("s", "p2")
    assert stub.requests == seen  # open: no request sent
    time.sleep(0.35)
    stub.fail_next = 0
    assert judge.breaker.state == "half_open"
    assert judge.judge("s", "p3") == (0.1, "grounded")
    assert judge.breaker.state == "closed"


def test_half_open_trial_failure_reopens():
    now = [0.0]
    br = CircuitBreaker(failures=1, cooldown_s=10, clock=lambda: now[0])
    br.failure()
    assert br.state == "open" and not br.allow()
    now[0] = 11
    assert br.allow() and not br.allow()  # one trial only
    br.failure()
    assert br.state == "open"


def test_bad_answers_are_errors(stub):
    stub.content = "I think it is fine"
    with pytest.raises(JudgeError, match="no JSON"):
        client(stub).judge("s", "p")
    assert parse_score('```json\n{"score": 0.25, "reason": "x"}\n```') == (0.25, "x")
    with pytest.raises(JudgeError, match="outside"):
        parse_score('{"score": 7}')


def test_processor_configured_from_environment_uses_the_judge(stub, storage, monkeypatch, tmp_path):
    import json
    from datetime import datetime, timezone

    from orbitwatch.processors.base import Message
    from orbitwatch.processors.evals import build
    from orbitwatch.schemas import envelope
    from orbitwatch.schemas.records import SpanRow

    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: judged\n    metrics: [judge_hallucination, judge_answer_relevance]\n")
    for k, v in {"ORBITWATCH_EVAL_RULES": str(rules), "ORBITWATCH_JUDGE_BASE_URL": stub.base_url,
                 "ORBITWATCH_JUDGE_MODEL": "judge-x", "ORBITWATCH_JUDGE_API_KEY": "sk-test",
                 "ORBITWATCH_JUDGE_TIMEOUT_S": "2"}.items():
        monkeypatch.setenv(k, v)
    proc = build(None, storage)
    row = SpanRow(timestamp=datetime.now(timezone.utc), trace_id="1" * 32, span_id="j1", span_name="llm",
                  span_type="llm", input=json.dumps("What is the capital of France?"),
                  output=json.dumps("INVENTED: Lyon."), span_attributes={"orbitwatch.context": '["Paris is the capital."]'})
    out = proc.handle([Message("orbitwatch.llm_spans", envelope.encode(row))])  # judge calls run in the pool
    proc.wait_judge(5)
    out += proc.tick(0)  # ...and are written by the next handle/tick after they finish
    emitted = {envelope.decode(e.value).name: envelope.decode(e.value) for e in out}
    assert emitted["judge_hallucination"].value == 0.9
    assert emitted["judge_answer_relevance"].scorer_version == "JudgeMetric/1/judge-x"
    assert stub.last_body["model"] == "judge-x"
    proc.close()


def test_eval_config_errors_name_the_variable(monkeypatch):
    from orbitwatch.config import ConfigError
    from orbitwatch.processors.evals import EvalConfig
    monkeypatch.setenv("ORBITWATCH_EVAL_JOIN_WAIT_S", "soon")
    with pytest.raises(ConfigError, match="ORBITWATCH_EVAL_JOIN_WAIT_S"):
        EvalConfig.from_env()
    monkeypatch.delenv("ORBITWATCH_EVAL_JOIN_WAIT_S")
    monkeypatch.setenv("ORBITWATCH_JUDGE_BASE_URL", "http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="ORBITWATCH_JUDGE_MODEL"):
        EvalConfig.from_env().judge_client()
