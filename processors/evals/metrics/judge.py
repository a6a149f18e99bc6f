"""LLM-as-judge variants of the RAG metrics, for any OpenAI-compatible chat endpoint.

Each asks the judge for ``{"score": 0..1, "reason": "..."}`` with the same direction as the
local metric of the same name (hallucination: 1 = entirely unsupported; the others: 1 = best).
The prompts are written for this project; they ask for a short reason naming the evidence.
"""
from __future__ import annotations

import json
from typing import Any

from orbitwatch.processors.evals.metrics.base import EvalInput, Metric, MetricError, ScoreResult

SYSTEM = ("You are a strict evaluator of answers produced by an AI assistant. Reply with one JSON object "
          'only: {"score": <number between 0 and 1>, "reason": "<one short sentence>"}.')

PROMPTS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    # name: (instructions, required fields, higher_is_better)
    "hallucination": (
        "Decide which statements of the ANSWER are not supported by the CONTEXT or the QUESTION. "
        "A statement is unsupported if it adds names, numbers or facts that neither contains, or "
        "contradicts them. score = share of unsupported statements (0 = fully supported, 1 = entirely "
        "unsupported). In reason, quote the unsupported statements.",
        ("output",), False),
    "answer_relevance": (
        "Rate how directly and completely the ANSWER addresses the QUESTION, ignoring whether it is "
        "true. score 1 = answers exactly what was asked, 0 = unrelated. In reason, say what is missing "
        "or off-topic.", ("input", "output"), True),
    "context_precision": (
        "For each CONTEXT chunk (numbered in retrieval order), decide whether it is useful for producing "
        "the EXPECTED ANSWER (or the ANSWER when no expected answer is given). score = average precision "
        "of useful chunks over their ranks (1 = all useful chunks come first). In reason, list the "
        "useful chunk numbers.", ("context", "output"), True),
    "context_recall": (
        "Decide which statements of the EXPECTED ANSWER can be attributed to the CONTEXT. score = share "
        "of attributable statements. In reason, quote those that cannot be attributed.",
        ("context", "expected"), True),
}


def render(item: EvalInput) -> str:
    parts = [f"QUESTION:\n{item.input}"]
    if item.context:
        parts.append("CONTEXT:\n" + "\n".join(f"[{i}] {c}" for i, c in enumerate(item.context, 1)))
    parts.append(f"ANSWER:\n{item.output}")
    if item.expected:
        parts.append(f"EXPECTED ANSWER:\n{item.expected}")
    return "\n\n".join(parts)


class JudgeMetric(Metric):
    """``judge_<kind>``: the local metric's question, answered by an LLM judge (remote, slower)."""

    version = "1"
    is_remote = True

    def __init__(self, kind: str, judge: Any, model_hint: str = "") -> None:
        if kind not in PROMPTS:
            raise MetricError(f"unknown judge metric {kind!r}; known: {', '.join(PROMPTS)}")
        self.kind = kind
        self.name = f"judge_{kind}"
        self.instructions, self.requires, self.higher_is_better = PROMPTS[kind]
        self.judge = judge

    @property
    def scorer_version(self) -> str:
        return f"JudgeMetric/{self.version}/{getattr(self.judge.config, 'model', '?')}"

    def score(self, item: EvalInput) -> ScoreResult:
        prompt = f"{self.instructions}\n\n{render(item)}"
        value, reason = self.judge.judge(SYSTEM, prompt)
        return ScoreResult(self.name, value, reason)

    def __repr__(self) -> str:
        return f"<judge metric {self.kind} via {json.dumps(getattr(self.judge, 'url', ''))}>"
