"""JSON envelopes for the derived topics (predictions, llm_spans, drift, evals, alerts).

``{"type": "<kind>", "v": 1, "record": {...}}`` where record is one of the models in
:mod:`orbitwatch.schemas.records`. Small, self-describing, readable with kcat.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from orbitwatch.schemas import records as r

KINDS: dict[str, type[BaseModel]] = {
    "prediction": r.Prediction,
    "label": r.Label,
    "reference": r.ReferenceFeature,
    "span": r.SpanRow,
    "drift": r.DriftResult,
    "data_quality": r.DataQuality,
    "eval_score": r.EvalScore,
    "alert": r.Alert,
}
_KIND_OF = {v: k for k, v in KINDS.items()}


def encode(record: BaseModel) -> bytes:
    return json.dumps({"type": _KIND_OF[type(record)], "v": 1,
                       "record": record.model_dump(mode="json")}, separators=(",", ":")).encode()


def decode(data: bytes) -> BaseModel:
    """Raises ValueError on anything that is not a valid envelope (the runner sends it to the DLQ)."""
    try:
        obj: Any = json.loads(data)
        model = KINDS[obj["type"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not an orbitwatch envelope: {exc}") from None
    return model.model_validate(obj["record"])
