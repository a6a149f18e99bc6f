"""Alert instances: one per (rule, label set), with the pending → firing → resolved state machine.

An instance is both the evaluation series (consecutive-breach streak, last window seen) and the
alert (status, starts_at, annotations), because both are keyed by the same labels. Its fingerprint
is a hash of the sorted labels (alertname included), so the same condition on the same object is
the same alert across restarts, processes and receivers.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from orbitwatch.processors.alerts import metrics
from orbitwatch.processors.alerts.rules import Rule, compare

log = logging.getLogger(__name__)
Status = Literal["inactive", "pending", "firing"]


def fingerprint(labels: dict[str, str]) -> str:
    """16 hex digits over the sorted label pairs (Alertmanager also uses a 64-bit label hash)."""
    h = hashlib.sha256()
    for k in sorted(labels):
        h.update(k.encode() + b"\xff" + labels[k].encode() + b"\xff")
    return h.hexdigest()[:16]


def human_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def render(template: str, ctx: dict[str, Any]) -> str:
    """``str.format`` over a context checked at load time (rules.check_template); never raises."""
    try:
        return template.format_map(ctx)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        metrics.TEMPLATE_ERRORS.inc()
        log.warning("alert annotation template %r failed: %s", template, exc)
        return template


@dataclass
class Transition:
    """A change worth recording: ``firing`` and ``resolved`` are stored and notified; ``pending`` is
    only counted (the ``alerts`` table keeps firing/resolved history)."""

    status: Literal["pending", "firing", "resolved"]
    instance: "AlertInstance"
    at: float


@dataclass
class AlertInstance:
    rule: str
    labels: dict[str, str]
    fingerprint: str
    status: Status = "inactive"
    streak: int = 0
    streak_before: int = 0
    window: str = ""
    active_since: float | None = None
    starts_at: float | None = None
    value: float = 0.0
    threshold: float = 0.0
    samples: int = 0
    annotations: dict[str, str] = field(default_factory=dict)
    # eval rules keep score buckets: {bucket start (s): [sum, count, count above, max]}
    buckets: dict[str, list[float]] = field(default_factory=dict)
    last_eval: float = 0.0

    @classmethod
    def new(cls, rule: Rule, labels: dict[str, str]) -> "AlertInstance":
        full = {"alertname": rule.name, **labels, "severity": rule.severity, **rule.labels}
        return cls(rule=rule.name, labels=full, fingerprint=fingerprint(full))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "AlertInstance":
        return cls(**data)

    @property
    def is_idle(self) -> bool:
        """Nothing worth keeping. A series that has seen a window is kept (see operator.prune):
        its window high-water mark is what makes an input replay after a restart — runners
        re-deliver everything since their last checkpoint — a no-op instead of a second episode."""
        return self.status == "inactive" and self.streak == 0 and not self.buckets and not self.window

    def breaching(self, rule: Rule, value: float, drifted: bool | None = None) -> bool:
        """The condition, with hysteresis: a *firing* alert stays firing until the value crosses
        ``resolve_threshold`` (defaults to ``threshold``); a pending one needs ``threshold`` every
        time, so persistence counts real breaches."""
        if rule.threshold is None:
            return bool(drifted)
        if self.status == "firing" and rule.resolve_threshold is not None:
            return compare(rule.op, value, rule.resolve_threshold)
        return compare(rule.op, value, rule.threshold)

    def evaluate(self, rule: Rule, breach: bool, value: float, window: str, now: float,
                 samples: int = 0, threshold: float | None = None) -> list[Transition]:
        """Apply one evaluation of ``window`` (a sortable key). A newer result for the same window
        (provisional → final, or a replay) replaces that window's vote instead of adding one, and
        an older window is ignored, so at-least-once input never inflates the streak."""
        if window and self.window and window < self.window:
            metrics.STALE_RESULTS.labels(rule=rule.name).inc()
            return []
        if window != self.window or not window:
            self.streak_before = self.streak
            self.window = window
        self.streak = self.streak_before + 1 if breach else 0
        self.value, self.samples, self.last_eval = value, samples, now
        self.threshold = threshold if threshold is not None else (rule.threshold or 0.0)
        out: list[Transition] = []
        if breach:
            if self.status == "inactive":
                self.status, self.active_since = "pending", now
                out.append(Transition("pending", self, now))
            out.extend(self.maybe_fire(rule, now))
            if self.status == "firing":
                self.annotations = self._annotations(rule)  # keep the latest values for repeats
        elif self.status == "pending":
            self.status, self.active_since = "inactive", None
        elif self.status == "firing":
            self.annotations = self._annotations(rule)
            self.status, self.active_since = "inactive", None
            out.append(Transition("resolved", self, now))
        return out

    def maybe_fire(self, rule: Rule, now: float) -> list[Transition]:
        """pending → firing once ``persistence`` evaluations and ``for`` seconds have passed; also
        called from tick() so a ``for`` duration elapses without a new evaluation."""
        if (self.status == "pending" and self.streak >= rule.persistence and self.active_since is not None
                and now - self.active_since >= rule.for_):
            self.status, self.starts_at = "firing", now
            self.annotations = self._annotations(rule)
            return [Transition("firing", self, now)]
        return []

    def force_resolve(self, rule_name: str, now: float) -> list[Transition]:
        """The rule was removed (rules reloaded): a firing alert must not stay firing forever."""
        was = self.status
        self.status, self.streak, self.active_since = "inactive", 0, None
        return [Transition("resolved", self, now)] if was == "firing" else []

    def _annotations(self, rule: Rule) -> dict[str, str]:
        ctx = {"labels": self.labels, "value": self.value, "threshold": self.threshold, "rule": rule.name,
               "severity": rule.severity, "samples": self.samples, "window": human_duration(rule.window),
               "kind": rule.kind}
        return {k: render(v, ctx) for k, v in rule.annotations.items()}
