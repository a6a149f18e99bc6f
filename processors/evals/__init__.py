"""Online LLM evaluation: scores LLM spans from ``orbitwatch.llm_spans`` into ``eval_scores``.

``build(settings, storage)`` is what the runners call; see :mod:`.operator` for the processor,
:mod:`.metrics` for the metrics and :mod:`.rules` for the rules file. Names are imported lazily
so that the SDK's offline ``evaluate()`` can use :mod:`.metrics` without the server extras.
"""
from __future__ import annotations

from typing import Any

_LAZY = {"EvalProcessor": "operator", "EvalConfig": "config", "RuleSet": "rules", "RulesError": "rules"}


def build(settings: Any, storage: Any, config: Any = None) -> Any:
    """The eval processor configured from the environment: the rules file at
    ``ORBITWATCH_EVAL_RULES`` if set, else the default rule (local RAG metrics on every LLM span)
    unless ``ORBITWATCH_EVAL_DEFAULT=off`` (then nothing is scored). Raises RulesError/ConfigError
    on a bad configuration, before any message is consumed."""
    from orbitwatch.processors.evals.config import EvalConfig
    from orbitwatch.processors.evals.operator import EvalProcessor
    from orbitwatch.processors.evals.rules import RuleSet

    config = config or EvalConfig.from_env()
    judge = config.judge_client()
    if config.rules_path:
        rules = RuleSet.load(config.rules_path, judge=judge)
    elif config.default_rule:
        rules = RuleSet.default()
    else:
        rules = RuleSet([])
    return EvalProcessor(storage, rules, config)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(name)
    import importlib
    return getattr(importlib.import_module(f"orbitwatch.processors.evals.{mod}"), name)


__all__ = ["build", "EvalProcessor", "EvalConfig", "RuleSet", "RulesError"]
