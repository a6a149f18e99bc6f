"""LLM-column normalisation, dialect by dialect (pure functions: no ClickHouse, no Kafka)."""
from __future__ import annotations

import json

import pytest

from orbitwatch.processors.sink.normalise import normalise
from orbitwatch.processors.sink.prices import PriceTable


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


def test_plain_span_has_no_llm_columns(prices):
    assert normalise({"http.route": "/x", "http.response.status_code": "200"}, prices) is None
    assert normalise({}, prices) is None


def test_session_and_user_on_a_plain_span(prices):
    f = normalise({"session.id": "s", "enduser.id": "u", "http.route": "/"}, prices)
    assert (f.span_type, f.session_id, f.user_id, f.model) == ("general", "s", "u", "")


@pytest.mark.parametrize("op,expected", [("chat", "llm"), ("text_completion", "llm"), ("embeddings", "llm"),
                                         ("execute_tool", "tool"), ("invoke_agent", "agent"),
                                         ("create_agent", "agent"), ("something_new", "llm")])
def test_genai_operation_maps_to_span_type(prices, op, expected):
    assert normalise({"gen_ai.operation.name": op}, prices).span_type == expected


def test_genai_current_conventions(prices):
    f = normalise({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "aws.bedrock",
                   "gen_ai.request.model": "claude-3-haiku-20240307", "gen_ai.usage.input_tokens": "4000000",
                   "gen_ai.usage.output_tokens": "400000", "gen_ai.conversation.id": "conv",
                   "gen_ai.system_instructions": '[{"type": "text", "content": "be nice"}]',
                   "gen_ai.input.messages": '[{"role": "user", "parts": []}]'}, prices)
    assert (f.provider, f.model, f.input_tokens, f.output_tokens, f.session_id) == (
        "aws.bedrock", "claude-3-haiku-20240307", 4_000_000, 400_000, "conv")
    assert f.cost == pytest.approx(4 * 0.25 + 0.4 * 1.25)
    assert json.loads(f.input)["system_instructions"][0]["content"] == "be nice"


def test_genai_deprecated_attribute_forms(prices):
    f = normalise({"gen_ai.system": "openai", "gen_ai.request.model": "gpt-3.5-turbo",
                   "gen_ai.prompt": '[{"role": "user", "content": "hi"}]', "gen_ai.completion": "hello",
                   "gen_ai.usage.prompt_tokens": "10", "gen_ai.usage.completion_tokens": "5"}, prices)
    assert (f.span_type, f.provider, f.input, f.output, f.input_tokens, f.output_tokens) == (
        "llm", "openai", '[{"role": "user", "content": "hi"}]', "hello", 10, 5)


def test_genai_indexed_prompt_forms_of_openllmetry(prices):
    f = normalise({"gen_ai.system": "openai", "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "s",
                   "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "u",
                   "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "a"}, prices)
    assert json.loads(f.input) == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert json.loads(f.output) == [{"role": "assistant", "content": "a"}]


def test_genai_deprecated_event_forms(prices):
    events = [("gen_ai.system.message", {"content": "sys"}), ("gen_ai.user.message", {"content": "q"}),
              ("gen_ai.choice", {"message": '{"content": "a"}'})]
    f = normalise({"gen_ai.system": "openai"}, prices, events)
    assert json.loads(f.input) == [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}]
    assert "a" in f.output


@pytest.mark.parametrize("kind,expected", [("LLM", "llm"), ("EMBEDDING", "llm"), ("CHAIN", "chain"),
                                           ("TOOL", "tool"), ("RETRIEVER", "retriever"), ("RERANKER", "retriever"),
                                           ("AGENT", "agent"), ("GUARDRAIL", "guardrail"), ("EVALUATOR", "general")])
def test_openinference_kinds(prices, kind, expected):
    assert normalise({"openinference.span.kind": kind}, prices).span_type == expected


def test_openinference_cost_and_provider(prices):
    f = normalise({"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.system": "openai",
                   "llm.token_count.prompt": "10", "llm.cost.total": "0.5", "input.value": "in",
                   "output.value": "out", "tag.tags": '["x"]'}, prices)
    assert (f.provider, f.cost, f.input, f.output, f.tags) == ("openai", 0.5, "in", "out", ["x"])


def test_orbitwatch_attributes_win_over_other_dialects(prices):
    f = normalise({"orbitwatch.span.type": "tool", "openinference.span.kind": "LLM", "input.value": "oi-in",
                   "orbitwatch.input": '{"a": 1}', "orbitwatch.session.id": "ours", "session.id": "theirs",
                   "orbitwatch.cost": "1.5", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": "1000",
                   "orbitwatch.tags": '["t1", "t2"]'}, prices)
    assert (f.span_type, f.input, f.session_id, f.cost, f.tags) == ("tool", '{"a": 1}', "ours", 1.5, ["t1", "t2"])


def test_unknown_model_is_unpriced_not_guessed(prices):
    f = normalise({"gen_ai.request.model": "in-house-7b", "gen_ai.usage.input_tokens": "100"}, prices)
    assert (f.cost, f.priced) == (0.0, False)
    g = normalise({"gen_ai.request.model": "in-house-7b"}, prices)
    assert g.priced  # no tokens: nothing to price


def test_bad_numbers_do_not_break_a_span(prices):
    f = normalise({"gen_ai.system": "x", "gen_ai.usage.input_tokens": "lots", "orbitwatch.cost": "free",
                   "orbitwatch.tags": "a, b"}, prices)
    assert (f.input_tokens, f.cost, f.tags) == (0, 0.0, ["a", "b"])
