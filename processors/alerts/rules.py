"""Declarative alert rules: pydantic models and a YAML loader whose errors name line and field.

A rules document (YAML file via ``ORBITWATCH_ALERT_RULES``, or uploaded through the API) looks like::

    defaults: true            # keep the built-in rules (false: this file replaces them)
    route: {group_by: [alertname, project, model], group_wait: 0s, group_interval: 10s}
    receivers:
      - {name: oncall, type: webhook, url: "https://hooks.example/x", secret_env: HOOK_SECRET}
    routes:
      - {match: {severity: critical}, receiver: oncall}
    rules:
      - {name: DatasetDrift, kind: drift, feature: __dataset__, threshold: 0.5, persistence: 2}

The models are strict (unknown keys are errors) because a misspelt ``treshold`` that silently
falls back to a default is exactly the kind of mistake nobody notices until the pager stays quiet.
"""
from __future__ import annotations

import fnmatch
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(v: Any) -> float:
    """``"250ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"2d"`` or a number of seconds → seconds."""
    if isinstance(v, bool):
        raise ValueError("expected a duration like 30s, 5m or 1h")
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError("a duration cannot be negative")
        return float(v)
    m = _DURATION.match(str(v))
    if not m:
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got {v!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]

RuleKind = Literal["drift", "data_quality", "eval", "span_health"]
Op = Literal[">", ">=", "<", "<="]
SPAN_HEALTH_METRICS = ("p50_latency_ms", "p90_latency_ms", "p95_latency_ms", "p99_latency_ms", "error_rate",
                       "span_count", "cost_per_hour", "tokens_per_hour", "volume_ratio")
SPAN_HEALTH_BY = ("project", "service_name", "model", "span_type")
EVAL_BY = ("project", "tenant")
DQ_METRICS = ("missing_rate", "out_of_range_share", "unseen_share", "unseen_categories", "volume", "volume_ratio")
# Template fields an annotation may use: {labels.feature}, {value:.3f}, {threshold}, ...
TEMPLATE_ROOTS = ("labels", "value", "threshold", "rule", "severity", "samples", "window", "kind")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def compare(op: str, value: float, threshold: float) -> bool:
    return {">": value > threshold, ">=": value >= threshold,
            "<": value < threshold, "<=": value <= threshold}[op]


def check_template(text: str) -> None:
    """Reject templates that would fail (or reach into Python internals) at render time."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"bad template {text!r}: {exc}") from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        root = re.split(r"[.\[]", field, maxsplit=1)[0]
        if root not in TEMPLATE_ROOTS:
            raise ValueError(f"unknown template field {{{field}}}; use one of {', '.join(TEMPLATE_ROOTS)}")
        if "_" in field.replace(root, "", 1)[:2] or "__" in field:
            raise ValueError(f"template field {{{field}}} may not access private attributes")


class Rule(Strict):
    """One alerting rule. Which fields apply depends on ``kind``:

    - ``drift``: DriftResult records; ``feature`` is a name/glob, ``any`` (every real feature) or one
      of ``__dataset__`` / ``__prediction__`` / ``__performance__``; ``metric`` a glob. Without
      ``threshold`` the record's own ``drifted`` verdict is the condition. Only each feature's
      primary test (``is_primary``) counts unless ``metric`` names one or ``primary_only: false``,
      so a feature drifting on three statistics is one alert, not three.
    - ``data_quality``: DataQuality records; ``metric`` one of missing_rate, out_of_range_share,
      unseen_share, unseen_categories, volume, volume_ratio; ``threshold`` required; ``feature`` as
      for drift (volume metrics are on ``__dataset__``).
    - ``eval``: EvalScore records named ``score``, aggregated (``mean``, ``share_above``
      ``score_threshold``, ``max``) over the last ``window`` per ``by`` labels, every ``interval``.
    - ``span_health``: ``metric`` from spans_rollup_1m per ``by`` labels over ``window``, every
      ``interval``; ``volume_ratio`` = spans in the window / mean of the trailing ``baseline``.

    One evaluation = one drift window, or one ``interval`` slot. ``persistence`` consecutive breaching
    evaluations *and* ``for`` seconds of continuous breach are needed to fire; once firing the alert
    stays so until the value crosses ``resolve_threshold`` (hysteresis).
    """

    name: str
    kind: RuleKind
    project: str = "*"
    model: str = "*"
    feature: str = "any"
    metric: str = "*"
    score: str = ""
    aggregate: Literal["mean", "share_above", "max"] = "mean"
    score_threshold: float = 0.5
    window: Duration = 300.0
    baseline: Duration = 3600.0
    interval: Duration = 0.0  # 0 = 10 s for eval, 60 s for span_health
    by: list[str] = Field(default_factory=lambda: ["project"])
    min_samples: int = Field(default=1, ge=1)
    op: Op = ">"
    threshold: float | None = None
    resolve_threshold: float | None = None
    persistence: int = Field(default=1, ge=1)
    for_: Duration = Field(default=0.0, alias="for")
    include_provisional: bool = False
    primary_only: bool | None = None  # drift: only each feature's chosen test; default: yes unless metric is named
    severity: str = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be an identifier (letters, digits, _), it becomes the alertname label")
        return v

    @field_validator("severity")
    @classmethod
    def _severity(cls, v: str) -> str:
        if not v or not _NAME.match(v):
            raise ValueError("must be a word such as critical, warning or info")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not _NAME.match(k) or k.startswith("__"):
                raise ValueError(f"label name {k!r} must be an identifier not starting with __")
        return v

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        for text in v.values():
            check_template(text)
        return v

    def wants_primary_only(self) -> bool:
        return self.primary_only if self.primary_only is not None else self.metric == "*"

    def effective_interval(self) -> float:
        if self.interval > 0:
            return self.interval
        return 10.0 if self.kind == "eval" else 60.0

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Cross-field checks, as (field path, message) so the loader can point at the right line."""
        out: list[tuple[tuple[str, ...], str]] = []
        if self.kind in ("data_quality", "eval", "span_health") and self.threshold is None:
            out.append((("threshold",), f"required for kind {self.kind}"))
        if self.kind == "data_quality" and self.metric not in DQ_METRICS:
            out.append((("metric",), f"must be one of {', '.join(DQ_METRICS)} for kind data_quality"))
        if self.kind == "span_health":
            if self.metric not in SPAN_HEALTH_METRICS:
                out.append((("metric",), f"must be one of {', '.join(SPAN_HEALTH_METRICS)} for kind span_health"))
            bad = [b for b in self.by if b not in SPAN_HEALTH_BY]
            if bad:
                out.append((("by",), f"{bad} not groupable; use {', '.join(SPAN_HEALTH_BY)}"))
            if self.window < 60:
                out.append((("window",), "span_health windows are minute rollups: use at least 1m"))
        if self.kind == "eval":
            if not self.score:
                out.append((("score",), "required for kind eval (the EvalScore name, e.g. hallucination)"))
            bad = [b for b in self.by if b not in EVAL_BY]
            if bad:
                out.append((("by",), f"{bad} not groupable; use {', '.join(EVAL_BY)}"))
        if self.resolve_threshold is not None:
            if self.threshold is None:
                out.append((("resolve_threshold",), "needs threshold"))
            elif self.op in (">", ">=") and self.resolve_threshold > self.threshold:
                out.append((("resolve_threshold",), f"must be <= threshold ({self.threshold}) for op {self.op}"))
            elif self.op in ("<", "<=") and self.resolve_threshold < self.threshold:
                out.append((("resolve_threshold",), f"must be >= threshold ({self.threshold}) for op {self.op}"))
        return out

    # -- selection helpers ----------------------------------------------------------------------
    def selects_feature(self, feature: str) -> bool:
        if self.feature == "any":
            return not (feature.startswith("__") and feature.endswith("__"))
        return fnmatch.fnmatchcase(feature, self.feature)

    def selects(self, project: str, model: str = "", metric: str = "") -> bool:
        return (fnmatch.fnmatchcase(project, self.project) and fnmatch.fnmatchcase(model, self.model)
                and (self.kind in ("eval", "span_health") or fnmatch.fnmatchcase(metric, self.metric)))


class GroupSettings(Strict):
    """Alertmanager's grouping knobs. ``group_wait`` 0 sends a new group's first notification at
    the end of the batch that fired it (the demo/latency default)."""

    group_by: list[str] = Field(default_factory=lambda: ["alertname", "project", "model", "model_version"])
    group_wait: Duration = 0.0
    group_interval: Duration = 10.0
    repeat_interval: Duration = 4 * 3600.0
    send_resolved: bool = True


class RouteDefaults(GroupSettings):
    receiver: str = "default"


class Route(Strict):
    """First matching route wins unless ``continue: true``. ``match`` values are full-match regexes."""

    match: dict[str, str] = Field(default_factory=dict)
    receiver: str
    continue_: bool = Field(default=False, alias="continue")
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    send_resolved: bool | None = None

    @field_validator("match")
    @classmethod
    def _regex(cls, v: dict[str, str]) -> dict[str, str]:
        for k, pattern in v.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"match.{k}: bad regex {pattern!r}: {exc}") from None
        return v

    def matches(self, labels: dict[str, str]) -> bool:
        return all(re.fullmatch(p, labels.get(k, "")) for k, p in self.match.items())

    def settings(self, base: GroupSettings) -> GroupSettings:
        over = {k: getattr(self, k) for k in GroupSettings.model_fields if getattr(self, k) is not None}
        return base.model_copy(update=over)


class Receiver(Strict):
    """Where notifications go. ``webhook`` bodies are signed with HMAC-SHA256 (see receivers.py)."""

    name: str
    type: Literal["alertmanager", "slack", "webhook"] = "alertmanager"
    url: str
    secret: str = ""
    secret_env: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 5.0
    backoff_initial: Duration = 0.5
    backoff_max: Duration = 60.0
    max_attempts: int = Field(default=20, ge=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v

    def signing_secret(self) -> str:
        import os
        return self.secret or (os.environ.get(self.secret_env, "") if self.secret_env else "")


class RulesFile(Strict):
    version: Literal[1] = 1
    defaults: bool = True
    route: RouteDefaults = Field(default_factory=RouteDefaults)
    routes: list[Route] = Field(default_factory=list)
    receivers: list[Receiver] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)


class RuleError(ValueError):
    """A rules document is invalid. ``errors`` lists ``{"line", "field", "message"}`` dicts; ``str()``
    is one line per error, e.g. ``rules.yaml:7: rules[0].threshold: Input should be a valid number``."""

    def __init__(self, source: str, errors: list[dict[str, Any]]) -> None:
        self.source = source
        self.errors = errors
        lines = [f"{source}:{e['line']}: {e['field']}: {e['message']}" if e.get("line")
                 else f"{source}: {e['field']}: {e['message']}" for e in errors]
        super().__init__("invalid alert rules\n" + "\n".join(lines))


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the composed YAML tree along ``loc``; the line of the deepest node found (1-based)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line = key.start_mark.line + 1
                    node = value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


_ALIASES = {"for_": "for", "continue_": "continue"}


def parse_rules(text: str, source: str = "<rules>") -> RulesFile:
    """Parse and validate a rules document; raises :class:`RuleError` naming line and field."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RuleError(source, [{"line": mark.line + 1 if mark else None, "field": "(yaml)",
                                  "message": f"not valid YAML: {problem}"}]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RuleError(source, [{"line": 1, "field": "(document)",
                                  "message": "expected a mapping with keys such as rules, receivers, route"}])
    errors: list[dict[str, Any]] = []
    try:
        doc = RulesFile.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(_ALIASES.get(p, p) if isinstance(p, str) else p for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            errors.append({"line": _line_of(node, loc), "field": _field_path(loc), "message": msg})
        raise RuleError(source, errors) from None
    errors = [{"line": _line_of(node, loc), "field": _field_path(loc), "message": msg}
              for loc, msg in document_problems(doc)]
    if errors:
        raise RuleError(source, errors)
    return doc


def document_problems(doc: RulesFile) -> list[tuple[tuple[Any, ...], str]]:
    """Checks across rules/receivers/routes (duplicate names, unknown receivers)."""
    out: list[tuple[tuple[Any, ...], str]] = []
    seen: dict[str, int] = {}
    for i, rule in enumerate(doc.rules):
        if rule.name in seen:
            out.append((("rules", i, "name"), f"duplicate rule name {rule.name!r} (also rules[{seen[rule.name]}])"))
        seen[rule.name] = i
        out.extend((("rules", i, *loc), msg) for loc, msg in rule.problems())
    names: dict[str, int] = {}
    for i, rec in enumerate(doc.receivers):
        if rec.name in names:
            out.append((("receivers", i, "name"), f"duplicate receiver name {rec.name!r}"))
        names[rec.name] = i
        if rec.type == "webhook" and not (rec.secret or rec.secret_env):
            out.append((("receivers", i, "secret"),
                        "a webhook receiver needs secret or secret_env (the variable holding the secret)"))
    known = set(names) | {"default"}
    for i, route in enumerate(doc.routes):
        if route.receiver not in known:
            out.append((("routes", i, "receiver"), f"unknown receiver {route.receiver!r}"))
    if doc.route.receiver not in known:
        out.append((("route", "receiver"), f"unknown receiver {doc.route.receiver!r}"))
    return out


def load_rules_file(path: str | Path) -> RulesFile:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise RuleError(str(p), [{"line": None, "field": "(file)", "message": f"cannot read: {exc.strerror}"}]) from None
    return parse_rules(text, str(p))
