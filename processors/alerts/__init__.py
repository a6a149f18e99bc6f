"""Alerts: declarative rules over drift, data quality, eval scores and span health; an
Alertmanager-like state machine and grouping; reliable delivery through a persistent outbox to
Alertmanager-v4, Slack and HMAC-signed webhook receivers.

Runners call :func:`build`; ``processor.close()`` stops the delivery threads on shutdown.
"""
from __future__ import annotations

import os
from typing import Any

from orbitwatch.processors.alerts.defaults import DEFAULT_RULES, AlertConfig, effective_config
from orbitwatch.processors.alerts.operator import AlertProcessor
from orbitwatch.processors.alerts.rules import RuleError, RulesFile, load_rules_file, parse_rules

__all__ = ["AlertProcessor", "AlertConfig", "DEFAULT_RULES", "RuleError", "RulesFile", "build",
           "effective_config", "load_rules_file", "parse_rules"]


def build(settings: Any, storage: Any) -> AlertProcessor:
    """The alert processor for ``settings``: built-in rules, plus/instead of the rules file named by
    ``settings.alert_rules`` / ``ORBITWATCH_ALERT_RULES``, delivering to ``settings.alert_webhook``.
    Raises :class:`RuleError` (naming line and field) for an invalid rules file."""
    path = getattr(settings, "alert_rules", "") or os.environ.get("ORBITWATCH_ALERT_RULES", "")
    doc = load_rules_file(path) if path else None
    webhook = getattr(settings, "alert_webhook", "") or ""
    config = effective_config(webhook, doc)
    return AlertProcessor(config, storage, external_url=getattr(settings, "api_url", "http://127.0.0.1:8080"),
                          alert_webhook=webhook, base_doc=doc)
