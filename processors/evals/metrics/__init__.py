"""Evaluation metrics: heuristic (reference-based), local RAG (no network) and LLM-judge.

``create(name, **params)`` builds a metric by name — how rules files and ``evaluate()`` refer
to them — and :data:`NAMES` lists every name. All metrics share :class:`Metric`'s interface:
``score(EvalInput) -> ScoreResult`` with a value in [0, 1] and a one-line reason.
"""
from __future__ import annotations

from typing import Any, Callable

from orbitwatch.processors.evals.metrics.base import (EvalInput, Metric, MetricError, ScoreResult)
from orbitwatch.processors.evals.metrics.heuristic import (Bleu, Contains, Equals, IsJson, LevenshteinRatio,
                                                           RegexMatch, RougeL)
from orbitwatch.processors.evals.metrics.rag import (AnswerRelevance, ContextPrecision, ContextRecall,
                                                     Hallucination)

_LOCAL: dict[str, Callable[..., Metric]] = {
    "equals": Equals, "contains": Contains, "regex_match": RegexMatch, "is_json": IsJson,
    "levenshtein_ratio": LevenshteinRatio, "bleu": Bleu, "rouge_l": RougeL,
    "hallucination": Hallucination, "answer_relevance": AnswerRelevance,
    "context_precision": ContextPrecision, "context_recall": ContextRecall,
}
_ALIASES = {"regex": "regex_match", "levenshtein": "levenshtein_ratio", "rouge": "rouge_l", "json": "is_json"}
JUDGE_PREFIX = "judge_"  # judge_hallucination, judge_answer_relevance, ...

NAMES: tuple[str, ...] = tuple(_LOCAL) + tuple(
    JUDGE_PREFIX + n for n in ("hallucination", "answer_relevance", "context_precision", "context_recall"))


def create(name: str, judge: Any = None, **params: Any) -> Metric:
    """Build the metric called ``name`` with ``params``; ``judge`` (a JudgeClient) is required for
    ``judge_*`` metrics. Raises MetricError for an unknown name or bad parameters."""
    key = _ALIASES.get(name, name)
    if key.startswith(JUDGE_PREFIX):
        from orbitwatch.processors.evals.metrics.judge import JudgeMetric
        if judge is None:
            raise MetricError(f"{name} needs an LLM judge: configure ORBITWATCH_JUDGE_BASE_URL / _MODEL")
        return JudgeMetric(key[len(JUDGE_PREFIX):], judge, **params)
    factory = _LOCAL.get(key)
    if factory is None:
        raise MetricError(f"unknown metric {name!r}; known: {', '.join(NAMES)}")
    try:
        return factory(**params)
    except TypeError as exc:
        raise MetricError(f"bad parameters for metric {name!r}: {exc}") from None


__all__ = ["EvalInput", "Metric", "MetricError", "ScoreResult", "create", "NAMES", "Equals", "Contains",
           "RegexMatch", "IsJson", "LevenshteinRatio", "Bleu", "RougeL", "Hallucination", "AnswerRelevance",
           "ContextPrecision", "ContextRecall"]
