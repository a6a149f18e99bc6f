"""Online LLM evaluation: scores LLM spans from ``orbitwatch.llm_spans`` into ``eval_scores``.

``build(settings, storage)`` is what the runners call; see :mod:`.operator` for the processor,
:mod:`.metrics` for the metrics and :mod:`.rules` for the rules file.
"""
from __future__ import annotations

from typing import Any

from orbitwatch.processors.evals.config import EvalConfig
from orbitwatch.processors.evals.operator import EvalProcessor
from orbitwatch.processors.evals.rules import RuleSet, RulesError


def build(settings: Any, storage: Any, config: EvalConfig | None = None) -> EvalProcessor:
    """The eval processor configured from the environment: the rules file at
    ``ORBITWATCH_EVAL_RULES`` if set, else the default rule (local RAG metrics on every LLM span)
    unless ``ORBITWATCH_EVAL_DEFAULT=off`` (then nothing is scored). Raises RulesError/ConfigError
    on a bad configuration, before any message is consumed."""
    config = config or EvalConfig.from_env()
    judge = config.judge_client()
    if config.rules_path:
        rules = RuleSet.load(config.rules_path, judge=judge)
    elif config.default_rule:
        rules = RuleSet.default()
    else:
        rules = RuleSet([])
    return EvalProcessor(storage, rules, config)


__all__ = ["build", "EvalProcessor", "EvalConfig", "RuleSet", "RulesError"]
