"""Event-time windows as rings of slots, with a watermark and allowed lateness.

Time is cut into slots of ``slide`` seconds (slot j = floor(t / slide)). Window k covers the
``n = size / slide`` slots k-n+1 .. k, i.e. [ (k-n+1)*slide, (k+1)*slide ); tumbling windows are
n = 1. Each slot holds *additive* state (bin counts, a mergeable KLL sketch, raw values while
small, performance counts), so a sliding window is the exact sum of its slots and a slot leaves
the ring by simply being dropped (subtraction of the oldest slot from a running total, done by
re-summing the at most n slots when a window is emitted — emission happens every emit_interval,
not per event, so the re-sum costs nothing on the hot path).

The watermark is max event time - allowed lateness. Window k is *closed* (its result final) once
its end <= watermark. An event is accepted while at least one window containing it is open;
otherwise it is late, counted, and dropped (``orbitwatch_drift_late_events_total``). Windows are
driven by event time only — never by wall clock, unlike faust's windowed tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orbitwatch.processors.drift import sketch as sk

UNSEEN_NAMES_PER_SLOT = 50


@dataclass
class Clock:
    """Slot arithmetic and the watermark of one model's stream."""

    size: float
    slide: float
    lateness: float
    max_event: float = -math.inf
    closed_through: int | None = None  # index of the last closed window

    def __post_init__(self) -> None:
        n = self.size / self.slide
        if self.slide <= 0 or n < 1 or abs(n - round(n)) > 1e-9:
            raise ValueError(f"window size {self.size}s must be a positive multiple of slide {self.slide}s")
        self.n = int(round(n))

    def slots_of(self, ts: np.ndarray) -> np.ndarray:
        return np.floor(ts / self.slide).astype(np.int64)

    @property
    def watermark(self) -> float:
        return self.max_event - self.lateness

    def accepted(self, slots: np.ndarray) -> np.ndarray:
        """True for slots that still belong to at least one open window."""
        if self.closed_through is None:
            return np.ones(slots.shape, bool)
        return slots + self.n - 1 > self.closed_through

    def advance(self, ts_max: float) -> tuple[int | None, int | None]:
        """Move the watermark with a batch's max event time.

        Returns (previously closed through, now closed through): windows in between just closed.
        """
        prev = self.closed_through
        if ts_max > self.max_event:
            self.max_event = ts_max
            newly = math.floor(self.watermark / self.slide) - 1
            if prev is None or newly > prev:
                self.closed_through = newly
        return prev, self.closed_through

    def window_bounds(self, k: int) -> tuple[float, float]:
        return (k - self.n + 1) * self.slide, (k + 1) * self.slide

    def window_slots(self, k: int) -> range:
        return range(k - self.n + 1, k + 1)

    def windows_touching(self, slots: list[int], after: int | None, through: int | None) -> list[int]:
        """Windows k with after < k <= through that contain at least one of ``slots``, oldest first.

        Only windows holding data are ever emitted, so a gap of a year costs nothing."""
        if through is None:
            return []
        ks: set[int] = set()
        for j in slots:
            lo = j if after is None else max(j, after + 1)
            hi = min(j + self.n - 1, through)
            ks.update(range(lo, hi + 1))
        return sorted(ks)

    def open_windows(self, slots: list[int]) -> list[int]:
        """Windows not closed yet, up to the one holding the newest event, that hold data."""
        if self.max_event == -math.inf:
            return []
        last = math.floor(self.max_event / self.slide)
        return self.windows_touching(slots, self.closed_through, last)

    def evictable(self, slot: int) -> bool:
        return self.closed_through is not None and slot + self.n - 1 <= self.closed_through

    def to_dict(self) -> dict[str, Any]:
        return {"max_event": None if self.max_event == -math.inf else self.max_event,
                "closed_through": self.closed_through}

    def load(self, d: dict[str, Any]) -> None:
        self.max_event = -math.inf if d.get("max_event") is None else float(d["max_event"])
        self.closed_through = d.get("closed_through")


@dataclass
class FeatureSlot:
    """Additive state of one feature in one slot."""

    counts: np.ndarray
    n: int = 0
    raw: list[np.ndarray] | None = field(default_factory=list)  # None once over exact_max
    sketch: Any = None  # kll_doubles_sketch, created when raw overflows
    unseen: set[str] = field(default_factory=set)

    def add_numeric(self, values: np.ndarray, exact_max: int, sketch_k: int) -> None:
        self.n += int(values.size)
        if self.raw is not None:
            if sum(a.size for a in self.raw) + values.size <= exact_max:
                self.raw.append(values)
                return
            self.sketch = sk.new_sketch(sketch_k)
            for a in self.raw:
                self.sketch.update(a)
            self.raw = None
        self.sketch.update(values)

    def raw_values(self) -> np.ndarray | None:
        if self.raw is None:
            return None
        return np.concatenate(self.raw) if self.raw else np.zeros(0)

    def to_dict(self, numeric: bool) -> dict[str, Any]:
        d: dict[str, Any] = {"counts": self.counts.tolist(), "n": self.n}
        if numeric:
            raw = self.raw_values()
            if raw is not None:
                d["raw"] = sk.array_to_b64(raw)
            else:
                d["sketch"] = sk.sketch_to_b64(self.sketch)
        if self.unseen:
            d["unseen"] = sorted(self.unseen)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSlot":
        s = cls(counts=np.asarray(d["counts"], np.int64), n=int(d["n"]))
        if "raw" in d:
            s.raw = [sk.array_from_b64(d["raw"])]
        elif "sketch" in d:
            s.raw = None
            s.sketch = sk.sketch_from_b64(d["sketch"])
        s.unseen = set(d.get("unseen", ()))
        return s


@dataclass
class WindowTotal:
    """A feature's state summed over the slots of one window."""

    counts: np.ndarray
    n: int
    sample: sk.Sample | None
    unseen: set[str]


def sum_slots(slots: list[FeatureSlot], nbins: int, numeric: bool, exact_max: int, sketch_k: int) -> WindowTotal:
    counts = np.zeros(nbins, np.int64)
    n = 0
    unseen: set[str] = set()
    for s in slots:
        counts += s.counts
        n += s.n
        unseen |= s.unseen
    sample = None
    if numeric:
        raws = [s.raw_values() for s in slots]
        if all(r is not None for r in raws) and n <= exact_max:
            vals = np.sort(np.concatenate(raws)) if raws else np.zeros(0)
            sample = sk.Sample(n=int(vals.size), values=vals)
        else:
            merged = sk.new_sketch(sketch_k)
            for s, r in zip(slots, raws):
                if r is not None:
                    if r.size:
                        merged.update(r)
                else:
                    merged.merge(s.sketch)
            sample = sk.Sample(n=int(merged.n), sketch=merged)
    return WindowTotal(counts=counts, n=n, sample=sample, unseen=unseen)
