"""Prometheus metrics of the eval processor: what was scored, skipped and why, and how the
LLM judge behaves. Nothing is dropped without one of these counters going up."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SCORES = Counter("orbitwatch_eval_scores_total", "Eval scores written", ["metric", "source"])
SKIPPED = Counter("orbitwatch_eval_skipped_total",
                  "Spans or metrics not scored, by reason", ["reason"])
SPANS_IN = Counter("orbitwatch_eval_spans_total", "Spans received by the eval processor", ["span_type"])
JOIN_PENDING = Gauge("orbitwatch_eval_join_pending", "LLM spans waiting for retriever context")
JUDGE_CALLS = Counter("orbitwatch_eval_judge_calls_total", "LLM-judge calls by outcome", ["outcome"])
JUDGE_BREAKER_OPENED = Counter("orbitwatch_eval_judge_breaker_opened_total", "Times the judge breaker opened")
SCORE_SECONDS = Histogram("orbitwatch_eval_score_seconds", "Time to score one span (all its metrics)",
                          buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30))
RULE_ERRORS = Counter("orbitwatch_eval_rule_errors_total",
                      "Stored eval rules that could not be loaded or compiled (skipped)")
