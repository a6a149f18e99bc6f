"""The online rule engine: filters, deterministic sampling, rules files and their errors."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from orbitwatch.processors.evals.rules import Rule, RuleSet, RulesError
from orbitwatch.schemas.records import SpanRow


def span(sid="s1", project="support-eu", name="answer_question", kind="llm", attrs=None) -> SpanRow:
    return SpanRow(timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc), trace_id="t", span_id=sid,
                   span_name=name, span_type=kind, project=project, span_attributes=attrs or {})


def test_filters():
    r = Rule(name="r", project="support-*", span_types=["llm"], span_name="answer*",
             attributes={"gen_ai.request.model": "gpt-4o*"}, metrics=["hallucination"])
    ok = span(attrs={"gen_ai.request.model": "gpt-4o-mini"})
    assert r.matches(ok)
    assert not r.matches(span(project="billing", attrs=ok.span_attributes))
    assert not r.matches(span(name="summarise", attrs=ok.span_attributes))
    assert not r.matches(span(kind="tool", attrs=ok.span_attributes))
    assert not r.matches(span(attrs={"gen_ai.request.model": "claude-3"}))
    assert not r.matches(span())  # attribute missing
    assert not Rule(name="off", enabled=False, metrics=["is_json"]).matches(ok)
    acme = Rule(name="t", tenant="acme", metrics=["is_json"])  # stored through the API with acme's key
    assert acme.matches(ok.model_copy(update={"tenant": "acme"})) and not acme.matches(ok)
    assert Rule(name="t", tenant="", metrics=["is_json"]).matches(ok)  # no auth: every tenant


def test_sampling_is_deterministic_and_close_to_the_rate():
    r = Rule(name="tenth", sampling=0.1, metrics=["is_json"])
    picked = [i for i in range(10_000) if r.sampled(f"span-{i}")]
    assert 850 <= len(picked) <= 1150
    assert picked == [i for i in range(10_000) if r.sampled(f"span-{i}")]  # same answer every time
    other = Rule(name="other", sampling=0.1, metrics=["is_json"])
    assert picked != [i for i in range(10_000) if other.sampled(f"span-{i}")]  # independent per rule
    assert all(Rule(name="all", metrics=["is_json"]).sampled(f"x{i}") for i in range(100))
    assert not any(Rule(name="none", sampling=0, metrics=["is_json"]).sampled(f"x{i}") for i in range(100))


def test_ruleset_for_span_and_default():
    rs = RuleSet([Rule(name="a", metrics=["hallucination"]),
                  Rule(name="b", span_types=["retriever"], metrics=["is_json"])])
    assert [c.rule.name for c in rs.for_span(span())] == ["a"]
    d = RuleSet.default()
    assert [m.name for m in d.rules[0].metrics] == ["hallucination", "answer_relevance", "context_precision",
                                                    "context_recall"]
    assert not d.needs_judge


def test_rules_file_yaml_and_json(tmp_path):
    y = tmp_path / "r.yaml"
    y.write_text("""
rules:
  - name: rag
    project: "prod-*"
    sampling: 0.5
    scope: trace
    metrics: [hallucination, {name: contains, params: {reference: "Sorry"}}]
""")
    rs = RuleSet.load(y)
    assert rs.rules[0].rule.scope == "trace" and rs.rules[0].metrics[1].reference == "Sorry"
    j = tmp_path / "r.json"
    j.write_text('{"rules": [{"name": "j", "metrics": ["bleu"]}]}')
    assert RuleSet.load(j).rules[0].metrics[0].name == "bleu"


@pytest.mark.parametrize("text, message", [
    ("rules:\n  - name: x\n    metrics: [hallucination]\n    sampling: 1.5\n", "rule #1 sampling"),
    ("rules:\n  - name: x\n    metrics: []\n", "rule #1 metrics"),
    ("rules:\n  - name: x\n    metrics: [nope]\n", "unknown metric 'nope'"),
    ("rules:\n  - name: x\n    metrics: [is_json]\n  - name: x\n    metrics: [is_json]\n", "duplicate rule names"),
    ("rules:\n  - name: x\n    metrics: [is_json]\n    colour: red\n", "colour"),
    ("rules: {a: 1}\n", "expected a list"),
    ("rules: [\n", "cannot parse"),
    ("rules:\n  - name: x\n    metrics: [judge_hallucination]\n", "needs an LLM judge"),
])
def test_rules_file_errors_name_the_problem(tmp_path, text, message):
    p = tmp_path / "rules.yaml"
    p.write_text(text)
    with pytest.raises(RulesError, match=message):
        RuleSet.load(p)


def test_missing_rules_file(tmp_path):
    with pytest.raises(RulesError, match="cannot read rules file"):
        RuleSet.load(tmp_path / "absent.yaml")
