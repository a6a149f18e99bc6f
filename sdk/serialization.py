"""Turn arbitrary Python values into the JSON strings that ride on span attributes.

Why a module of its own: ``@track`` captures whatever a user's function takes and returns
(dataclasses, pydantic models, numpy scalars, sockets...). Capturing must never raise and
never produce megabyte attributes, so every value goes through :func:`to_json`, which

* encodes with the stdlib ``json`` (C accelerated) and only falls back to :func:`_default`
  for objects it cannot encode (dataclasses, pydantic models, numpy, sets, datetimes, ...);
* replaces anything still unencodable by its ``repr`` (never an exception);
* truncates the text at ``max_chars`` and appends :data:`TRUNCATION_MARKER` plus the
  original size, so a reader sees that (and how much) was cut. The caller records which
  fields were cut in ``orbitwatch.truncated``. A truncated value is no longer valid JSON:
  consumers must check ``orbitwatch.truncated`` before parsing.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
import uuid
from decimal import Decimal
from pathlib import PurePath
from typing import Any

TRUNCATION_MARKER = "...[truncated by orbitwatch; original size "
DEFAULT_MAX_CHARS = 32_768

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True)


def _default(obj: Any) -> Any:
    """``json`` fallback: return something json can encode, or a repr string."""
    try:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        dump = getattr(obj, "model_dump", None)  # pydantic v2
        if callable(dump) and not isinstance(obj, type):
            return dump(mode="json")
        if isinstance(obj, (set, frozenset)):
            return sorted(obj, key=repr)
        if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
            return obj.isoformat()
        if isinstance(obj, _dt.timedelta):
            return obj.total_seconds()
        if isinstance(obj, enum.Enum):
            return obj.value
        if isinstance(obj, (uuid.UUID, PurePath, Decimal)):
            return str(obj)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            raw = bytes(obj)
            return raw.decode("utf-8", "replace") if len(raw) <= 4096 else f"<{len(raw)} bytes>"
        tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars, torch tensors
        if callable(tolist) and type(obj).__module__.split(".")[0] in ("numpy", "torch", "pandas"):
            return tolist()
        item = getattr(obj, "item", None)
        if callable(item) and type(obj).__module__.split(".")[0] == "numpy":
            return item()
        to_dict = getattr(obj, "to_dict", None)  # pandas objects
        if callable(to_dict) and type(obj).__module__.split(".")[0] == "pandas":
            return to_dict()
        legacy = getattr(obj, "dict", None)  # pydantic v1
        if callable(legacy) and hasattr(obj, "__fields__"):
            return legacy()
    except Exception:  # noqa: BLE001 - capturing must never break the caller
        pass
    return _safe_repr(obj)


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:  # noqa: BLE001
        return f"<unrepresentable {type(obj).__qualname__}>"


def _sanitize_floats(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by strings; used only on the rare slow path."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _sanitize_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize_floats(v) for v in obj]
    return obj


def dumps(value: Any) -> str:
    """JSON text of ``value``; never raises (falls back to repr for what JSON cannot hold)."""
    if value is None or type(value) in (str, int, bool):
        return _encoder.encode(value)
    try:
        text = json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):
        # circular references, non-string keys json rejects, or a buggy __repr__/model_dump
        try:
            text = json.dumps(_sanitize_floats(value), default=_default, ensure_ascii=False,
                              separators=(",", ":"), skipkeys=False)
        except Exception:  # noqa: BLE001
            text = _encoder.encode(_safe_repr(value))
    if "NaN" in text or "Infinity" in text:
        # json writes NaN/Infinity tokens that strict parsers reject; rewrite them as strings
        try:
            text = json.dumps(_sanitize_floats(json.loads(text)), ensure_ascii=False, separators=(",", ":"))
        except Exception:  # noqa: BLE001
            pass
    return text


def truncate(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut ``text`` to ``max_chars`` characters plus a marker naming the original size."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text, False
    return f"{text[:max_chars]}{TRUNCATION_MARKER}{len(text)} chars]", True


def to_json(value: Any, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, bool]:
    """``(json_text, truncated)`` for ``value``; the one entry point ``@track`` uses."""
    return truncate(dumps(value), max_chars)
