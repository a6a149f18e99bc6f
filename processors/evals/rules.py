"""Online scoring rules: which spans to score, how often, with which metrics.

A rules file (YAML or JSON, path in ``ORBITWATCH_EVAL_RULES``) looks like::

    rules:
      - name: rag-quality
        project: "support-*"          # glob on the span's project (omit: any)
        span_types: [llm]             # span types to score
        span_name: "answer*"          # glob on span name (omit: any)
        attributes: {gen_ai.request.model: "gpt-4o*"}   # every key must match (glob)
        sampling: 0.25                # share of matching spans scored, decided per span id
        scope: span                   # span | trace (trace: score lands on the trace id)
        metrics: [hallucination, answer_relevance, {name: regex_match, params: {pattern: "^\\\\{"}}]

Without a file the default rule scores every LLM span with the local RAG metrics; set
``ORBITWATCH_EVAL_DEFAULT=off`` to disable it. Sampling hashes (rule, span id), so a re-delivered
span gets the same decision and replays write the same scores.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orbitwatch.processors.evals import metrics as M
from orbitwatch.schemas.records import SpanRow

DEFAULT_METRICS = ("hallucination", "answer_relevance", "context_precision", "context_recall")


class RulesError(ValueError):
    """The rules file is missing, unparsable or names an unknown metric; the message says where."""


class MetricSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    params: dict[str, Any] = {}


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    project: str | None = None
    span_types: list[str] = ["llm"]
    span_name: str | None = None
    attributes: dict[str, str] = {}
    sampling: float = Field(default=1.0, ge=0.0, le=1.0)
    scope: Literal["span", "trace"] = "span"
    metrics: list[MetricSpec] = Field(min_length=1)
    enabled: bool = True
    tenant: str | None = None  # set by the API from the key: the rule only sees that tenant's spans ("" = all)

    @field_validator("metrics", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": m} if isinstance(m, str) else m for m in v]
        return v

    def matches(self, span: SpanRow) -> bool:
        if not self.enabled or span.span_type not in self.span_types:
            return False
        if self.tenant and span.tenant != self.tenant:  # "" (no auth): every tenant
            return False
        if self.project is not None and not fnmatch.fnmatchcase(span.project, self.project):
            return False
        if self.span_name is not None and not fnmatch.fnmatchcase(span.span_name, self.span_name):
            return False
        for key, pattern in self.attributes.items():
            value = span.span_attributes.get(key)
            if value is None or not fnmatch.fnmatchcase(value, pattern):
                return False
        return True

    def sampled(self, span_id: str) -> bool:
        """Deterministic per (rule, span): the same span always gets the same answer."""
        if self.sampling >= 1.0:
            return True
        if self.sampling <= 0.0:
            return False
        h = hashlib.blake2b(f"{self.name}\0{span_id}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "big") / 2**64 < self.sampling


class ValidationJudge:
    """Stands in for the LLM judge when a rule is only validated (API, ``orbitwatch evals
    check-rules``): judge metrics compile; the running processor uses the configured judge."""

    class config:  # noqa: N801 - mirrors JudgeClient.config
        model = "(configured at run time)"

    def judge(self, system: str, prompt: str) -> tuple[float, str]:
        raise RuntimeError("ValidationJudge never scores")


def validate_rule(data: Any) -> Rule:
    """Parse and compile one rule (JSON object); RulesError with the field and reason otherwise."""
    rs = RuleSet.parse([data], judge=ValidationJudge(), source="rule")
    return rs.rules[0].rule


class CompiledRule:
    """A rule with its metric objects built once (not per span)."""

    def __init__(self, rule: Rule, judge: Any = None) -> None:
        self.rule = rule
        self.metrics: list[M.Metric] = []
        for spec in rule.metrics:
            try:
                self.metrics.append(M.create(spec.name, judge=judge, **spec.params))
            except M.MetricError as exc:
                raise RulesError(f"rule {rule.name!r}: {exc}") from None


class RuleSet:
    def __init__(self, rules: list[Rule], judge: Any = None) -> None:
        keys = [(r.tenant, r.name) for r in rules]
        dupes = {n for t, n in keys if keys.count((t, n)) > 1}
        if dupes:
            raise RulesError(f"duplicate rule names: {', '.join(sorted(dupes))}")
        self.rules = [CompiledRule(r, judge) for r in rules]
        self.judge = judge

    def with_extra(self, rules: list[Rule]) -> tuple["RuleSet", list[str]]:
        """This set plus ``rules`` (from the API); a rule that cannot be compiled (unknown metric, a
        judge metric without a judge) or clashes with an existing name is left out and reported."""
        out = RuleSet([], self.judge)
        out.rules = list(self.rules)
        taken = {(c.rule.tenant, c.rule.name) for c in self.rules}
        errors = []
        for r in rules:
            if (r.tenant, r.name) in taken or (None, r.name) in taken:
                errors.append(f"rule {r.name!r}: name already used by the rules file")
                continue
            try:
                out.rules.append(CompiledRule(r, self.judge))
            except RulesError as exc:
                errors.append(str(exc))
                continue
            taken.add((r.tenant, r.name))
        return out, errors

    def for_span(self, span: SpanRow) -> list[CompiledRule]:
        """The rules that match ``span`` and whose sampling selects it."""
        return [c for c in self.rules if c.rule.matches(span) and c.rule.sampled(span.span_id)]

    @property
    def needs_judge(self) -> bool:
        return any(m.is_remote for c in self.rules for m in c.metrics)

    @classmethod
    def default(cls) -> "RuleSet":
        return cls([Rule(name="default", span_types=["llm"], metrics=list(DEFAULT_METRICS))])

    @classmethod
    def parse(cls, data: Any, judge: Any = None, source: str = "rules") -> "RuleSet":
        if isinstance(data, dict):
            data = data.get("rules")
        if not isinstance(data, list):
            raise RulesError(f"{source}: expected a list under 'rules'")
        rules = []
        for i, item in enumerate(data):
            try:
                rules.append(Rule.model_validate(item))
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"])
                raise RulesError(f"{source}: rule #{i + 1} {loc}: {err['msg']}") from None
        return cls(rules, judge)

    @classmethod
    def load(cls, path: str | Path, judge: Any = None) -> "RuleSet":
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise RulesError(f"cannot read rules file {p}: {exc.strerror}") from None
        try:
            if p.suffix == ".json":
                data = json.loads(text)
            else:
                import yaml
                data = yaml.safe_load(text)
        except Exception as exc:
            raise RulesError(f"cannot parse rules file {p}: {str(exc).splitlines()[0]}") from None
        return cls.parse(data, judge, source=str(p))
