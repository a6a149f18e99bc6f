"""Orbitwatch SDK: experiment tracking, LLM tracing and production monitoring over OpenTelemetry.

    from orbitwatch import Experiment, track, MonitoredModel

This package (and only this) is what ``pip install orbitwatch`` needs: it depends on the
OpenTelemetry SDK, its OTLP/gRPC exporter and pydantic. The pipeline (``orbitwatch.ingest``,
``orbitwatch.processors``, ``orbitwatch.storage``, ``orbitwatch.api``) needs ``orbitwatch[server]``.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public names, imported on first use so `import orbitwatch` stays cheap.
_EXPORTS = {
    "Experiment": "orbitwatch.experiment",
    "start": "orbitwatch.experiment",
    "track": "orbitwatch.tracking",
    "update_current_span": "orbitwatch.tracking",
    "update_current_trace": "orbitwatch.tracking",
    "get_current_trace_id": "orbitwatch.tracking",
    "inject_trace_headers": "orbitwatch.tracking",
    "extract_trace_context": "orbitwatch.tracking",
    "log_feedback": "orbitwatch.tracking",
    "flush": "orbitwatch.transport",
    "configure": "orbitwatch.transport",
    "stats": "orbitwatch.transport",
    "get_current_span_id": "orbitwatch.tracking",
    "MonitoredModel": "orbitwatch.monitoring",
    "evaluate": "orbitwatch.evaluation",
    "get_or_create_dataset": "orbitwatch.evaluation",
    "get_dataset": "orbitwatch.evaluation",
    "compare_runs": "orbitwatch.evaluation",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orbitwatch' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
