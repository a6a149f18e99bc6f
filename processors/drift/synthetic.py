"""Synthetic prediction streams for tests, benchmarks and demos of the drift processor.

Kept in the package (not in tests/) because ``bench/drift.py`` and the end-to-end tests build
the same streams: reference envelopes first, then predictions with an optional mean shift of
chosen features from a given time on.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime, timezone

import numpy as np

from orbitwatch.processors.base import Message
from orbitwatch.schemas import envelope
from orbitwatch.schemas import records as r

TOPIC = "orbitwatch.predictions"
_OFFSETS = itertools.count()  # like a partition log: every message gets a new, increasing offset


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def references(rng: np.random.Generator, features: Iterable[str], n: int, *, project: str = "p", model: str = "m",
               version: str = "1", chunk: int = 0, categorical: dict[str, list[str]] | None = None,
               created_at: datetime | None = None) -> list[r.ReferenceFeature]:
    """N(0, 1) references for ``features`` (and uniform ones for ``categorical``), optionally in chunks."""
    created_at = created_at or ts(1_600_000_000)
    out: list[r.ReferenceFeature] = []
    for f in features:
        vals = rng.normal(0.0, 1.0, n)
        for part in np.array_split(vals, max(1, -(-n // chunk)) if chunk else 1):
            out.append(r.ReferenceFeature(project=project, model=model, model_version=version, feature=f,
                                          kind="numeric", numeric_values=part.tolist(), created_at=created_at))
    for f, cats in (categorical or {}).items():
        out.append(r.ReferenceFeature(project=project, model=model, model_version=version, feature=f,
                                      kind="categorical", categorical_values=list(rng.choice(cats, n)),
                                      created_at=created_at))
    return out


def predictions(rng: np.random.Generator, features: Iterable[str], n: int, t0: float, rate: float, *,
                shift: dict[str, float] | None = None, shift_from: float = float("inf"), project: str = "p",
                model: str = "m", version: str = "1", categorical: dict[str, list[str]] | None = None,
                id_prefix: str = "", labels: bool = False) -> list[r.Prediction]:
    """``n`` predictions at ``rate`` per second from ``t0``; ``shift`` adds a mean shift (in sigma)
    to the named features for events at or after ``shift_from``."""
    features = list(features)
    shift = shift or {}
    times = t0 + np.arange(n) / rate
    values = rng.normal(0.0, 1.0, (n, len(features)))
    for i, f in enumerate(features):
        if f in shift:
            values[times >= shift_from, i] += shift[f]
    out = []
    for k in range(n):
        cats = {f: str(rng.choice(c)) for f, c in (categorical or {}).items()}
        prob = float(rng.random())
        out.append(r.Prediction(
            project=project, model=model, model_version=version, prediction_id=f"{id_prefix}{k}",
            timestamp=ts(float(times[k])), numeric_features=dict(zip(features, values[k].tolist())),
            categorical_features=cats, prediction="1" if prob > 0.5 else "0", probability=prob,
            label=("1" if rng.random() < prob else "0") if labels else None))
    return out


def messages(recs: Iterable[r.Record], topic: str = TOPIC) -> list[Message]:
    """Envelopes as a runner delivers them: one partition, increasing offsets across calls."""
    return [Message(topic=topic, value=envelope.encode(x), key=f"{x.project}/{x.model}/{x.model_version}".encode(),
                    offset=next(_OFFSETS)) for x in recs]
