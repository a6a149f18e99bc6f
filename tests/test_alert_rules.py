"""Rules documents: what a user writes, and the errors they get (line + field) when it is wrong."""
from __future__ import annotations

from pathlib import Path

import pytest

from orbitwatch.config import load_settings
from orbitwatch.processors.alerts import DEFAULT_RULES, RuleError, build, load_rules_file, parse_rules
from orbitwatch.processors.alerts.rules import parse_duration

ROOT = Path(__file__).resolve().parents[1]


def errors_of(text: str) -> list[dict]:
    with pytest.raises(RuleError) as exc:
        parse_rules(text, "rules.yaml")
    return exc.value.errors


def test_wrong_type_names_field_and_line():
    text = """rules:
  - name: Ok
    kind: drift
  - name: Bad
    kind: data_quality
    metric: missing_rate
    threshold: lots
"""
    (err,) = errors_of(text)
    assert err["field"] == "rules[1].threshold" and err["line"] == 7
    assert "valid number" in err["message"]


def test_misspelt_key_is_an_error_not_a_default():
    (err,) = errors_of("rules:\n  - {name: A, kind: drift, treshold: 0.3}\n")
    assert err["field"] == "rules[0].treshold" and err["line"] == 2
    assert "Extra inputs" in err["message"]


def test_cross_field_problems_point_at_the_field():
    text = """receivers:
  - {name: hook, type: webhook, url: "http://127.0.0.1:1/x"}
routes:
  - {match: {severity: critical}, receiver: pager}
rules:
  - name: Hall
    kind: eval
    threshold: 0.5
    resolve_threshold: 0.7
  - name: Hall
    kind: span_health
    metric: p42_latency
    threshold: 1
"""
    errs = {e["field"]: e for e in errors_of(text)}
    assert errs["rules[0].score"]["line"] == 6  # missing key: the rule's line
    assert errs["rules[0].resolve_threshold"]["line"] == 9
    assert "must be <= threshold" in errs["rules[0].resolve_threshold"]["message"]
    assert "duplicate rule name" in errs["rules[1].name"]["message"] and errs["rules[1].name"]["line"] == 10
    assert errs["rules[1].metric"]["line"] == 12
    assert errs["receivers[0].secret"]["line"] == 2
    assert "unknown receiver 'pager'" in errs["routes[0].receiver"]["message"]


def test_bad_values_in_nested_fields():
    errs = {e["field"]: e for e in errors_of("""route:
  group_wait: soon
rules:
  - name: x-y
    kind: drift
    for: -3
    annotations: {summary: "{labels.__class__}"}
""")}
    assert "duration" in errs["route.group_wait"]["message"] and errs["route.group_wait"]["line"] == 2
    assert errs["rules[0].name"]["line"] == 4
    assert errs["rules[0].for"]["line"] == 6
    assert "private" in errs["rules[0].annotations"]["message"]


def test_yaml_syntax_error_has_a_line():
    (err,) = errors_of("rules:\n  - name: a\n    kind: [drift\n")
    assert err["field"] == "(yaml)" and err["line"] is not None and "not valid YAML" in err["message"]


def test_error_text_is_one_line_per_problem(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("rules:\n  - {name: A, kind: nope}\n")
    with pytest.raises(RuleError) as exc:
        load_rules_file(p)
    assert f"{p}:2: rules[0].kind:" in str(exc.value)


def test_build_rejects_an_invalid_rules_file(tmp_path, storage, monkeypatch):
    p = tmp_path / "r.yaml"
    p.write_text("rules:\n  - {name: A, kind: drift, persistence: 0}\n")
    monkeypatch.setenv("ORBITWATCH_ALERT_RULES", str(p))
    settings = load_settings(alert_webhook="http://127.0.0.1:9/x")
    with pytest.raises(RuleError, match=r"r.yaml:2: rules\[0\].persistence: Input should be greater"):
        build(settings, storage)


def test_shipped_example_rules_file_is_valid():
    doc = load_rules_file(ROOT / "deploy/alerts/default-rules.yaml")
    assert doc.rules and doc.defaults
    kinds = {r.kind for r in doc.rules}
    assert kinds == {"drift", "data_quality", "eval", "span_health"}


def test_defaults_extend_or_replace():
    from orbitwatch.processors.alerts import effective_config
    cfg = effective_config("http://127.0.0.1:9/x", parse_rules("rules: [{name: Mine, kind: drift}]"))
    assert set(cfg.rules) == {r.name for r in DEFAULT_RULES} | {"Mine"}
    assert cfg.receivers["default"].type == "alertmanager"
    cfg = effective_config("", parse_rules("defaults: false\nrules: [{name: Mine, kind: drift}]"))
    assert set(cfg.rules) == {"Mine"} and cfg.receivers == {}


def test_durations():
    assert parse_duration("250ms") == 0.25 and parse_duration("5m") == 300 and parse_duration(2) == 2
    with pytest.raises(ValueError):
        parse_duration("5 minutes")
