"""Opik's ``opik_context`` module names, so ``from opik import opik_context`` becomes
``from orbitwatch import opik_context`` with nothing else to change."""
from __future__ import annotations

from orbitwatch.tracking import (get_current_span_id, get_current_trace_id, update_current_span,
                                 update_current_trace)

__all__ = ["update_current_span", "update_current_trace", "get_current_trace_id", "get_current_span_id"]
