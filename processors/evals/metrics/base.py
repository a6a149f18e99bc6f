"""What every metric takes and returns.

A metric scores one :class:`EvalInput` (question, answer, retrieved context, optional reference
answer) and returns a :class:`ScoreResult` whose ``value`` is in [0, 1] and whose ``reason``
says, in one short line, why: a score nobody can explain is a score nobody trusts.

Direction: for ``hallucination`` higher is worse (share of unsupported claims); for every other
built-in metric higher is better. ``Metric.higher_is_better`` says which, so comparisons and
alert rules need not guess.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


class MetricError(ValueError):
    """The metric cannot score this input (e.g. a reference-based metric without a reference)."""


@dataclass(frozen=True, slots=True)
class ScoreResult:
    name: str
    value: float
    reason: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.value <= 1.0:
            raise MetricError(f"{self.name}: score {self.value!r} outside [0, 1]")


@dataclass(slots=True)
class EvalInput:
    """The fields a metric may read. ``context`` holds retrieved documents, in rank order."""

    input: str = ""
    output: str = ""
    context: list[str] = field(default_factory=list)
    expected: str | None = None


class Metric(ABC):
    """Base class: subclasses set ``name``, ``version`` and implement :meth:`score`.

    ``requires`` lists the EvalInput fields that must be non-empty; the operator and
    ``evaluate()`` skip a metric (with a counted reason) rather than score garbage.
    """

    name: str = ""
    version: str = "1"
    requires: tuple[str, ...] = ("output",)
    higher_is_better: bool = True
    is_remote: bool = False  # True for metrics that call a network service (LLM judge)

    @abstractmethod
    def score(self, item: EvalInput) -> ScoreResult: ...

    def missing(self, item: EvalInput) -> list[str]:
        """The required fields that ``item`` lacks (empty list: can score)."""
        out = []
        for f in self.requires:
            v = getattr(item, f)
            if v is None or v == "" or v == []:
                out.append(f)
        return out

    @property
    def scorer_version(self) -> str:
        return f"{type(self).__name__}/{self.version}"

    def __repr__(self) -> str:
        return f"<metric {self.name} v{self.version}>"


def clamp01(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else float(x)


def shorten(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
