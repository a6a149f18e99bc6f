"""Rolling data drift, data quality and performance on the prediction stream.

``build(settings, storage)`` returns the :class:`~.operator.DriftProcessor` that both runners
drive. Configuration: YAML at ``$ORBITWATCH_DRIFT_CONFIG`` (see :mod:`.config`).
"""
from __future__ import annotations

from typing import Any

from orbitwatch.processors.drift.config import DriftConfig, ModelDriftConfig, load_config
from orbitwatch.processors.drift.operator import DriftProcessor

__all__ = ["DriftConfig", "DriftProcessor", "ModelDriftConfig", "build", "load_config"]


def build(settings: Any, storage: Any) -> DriftProcessor:
    """The drift processor for a runner; ``storage`` may be None (no ClickHouse writes).

    The configuration file is ``settings.drift_config`` if the settings carry one, else
    ``$ORBITWATCH_DRIFT_CONFIG``, else the defaults; a bad file raises DriftConfigError at start."""
    return DriftProcessor(load_config(getattr(settings, "drift_config", None) or None), storage)
