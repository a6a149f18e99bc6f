"""Per-model and per-feature streaming state: reference building, slot rings, label joins.

Memory per (model, feature), with the defaults (bins=20, sketch_k=200, exact_max_values=2000,
reference_exact_max=5000) and S live slots (S = window/slide + lateness/slide + 1):

* reference: (bins+3) int64 counts + 19 edges + either the raw values (<= 5000 x 8 B = 40 KB) or
  a KLL sketch (~5 KB at k=200, whatever the reference size);
* each live slot: (bins+3) x 8 B counts + raw values while the slot holds <= 2000 / (window/slide)
  (so <= 16 KB of raw values per window's worth of slots), then a KLL sketch instead (<= ~5 KB;
  KLL size grows only with log(n));
* categorical features: (max_categories+1) x 8 B counts per slot and <= 50 unseen names.

So a tumbling window costs ~ 60 KB per numeric feature at most and a 1 h / 5 min sliding window
with 1 min lateness ~ 13 x 5 KB sketches + 16 KB raw + 40 KB reference ~ 120 KB at most. The
snapshot of one feature (one key, base64 in JSON: x 4/3) stays well under 500 KB.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orbitwatch.processors.drift import sketch as sk
from orbitwatch.processors.drift.binning import Reference
from orbitwatch.processors.drift.config import ModelDriftConfig
from orbitwatch.processors.drift.windows import (UNSEEN_NAMES_PER_SLOT, Clock, FeatureSlot, WindowTotal,
                                                 sum_slots)

PROB_BINS = 100
MAX_LABEL_CLASSES = 50
PREDICTION = "__prediction__"


@dataclass
class FeatureState:
    """One feature of one model version: its reference and its per-slot window state."""

    name: str
    kind: str  # "numeric" | "categorical"
    ref: Reference | None = None
    ref_source: str = ""  # "explicit" | "frozen"
    collecting: list[np.ndarray] = field(default_factory=list)  # frozen mode: values seen so far
    collected: int = 0
    chunks: dict[str, dict[str, Any]] = field(default_factory=dict)  # explicit: created_at -> parts
    ref_stale: bool = False  # chunks changed since the reference was built
    slots: dict[int, FeatureSlot] = field(default_factory=dict)
    events: dict[int, int] = field(default_factory=dict)  # events offered per slot (for missing rate)

    @property
    def numeric(self) -> bool:
        return self.kind == "numeric"

    # -- reference --------------------------------------------------------------------------------
    def add_chunk(self, created_at: str, values: list[Any]) -> bool:
        """Add one chunk of an explicit reference; a replayed chunk is recognised and ignored."""
        digest = hashlib.sha1(json.dumps(values, separators=(",", ":")).encode()).hexdigest()
        latest = max(self.chunks) if self.chunks else ""
        if created_at < latest:
            return False  # an older reference than the one we hold
        if created_at > latest:
            self.chunks = {created_at: {"digests": [], "parts": []}}
        entry = self.chunks[created_at]
        if digest in entry["digests"]:
            return False
        entry["digests"].append(digest)
        # numeric parts as float64 arrays: 8 B per value instead of a Python float object each
        entry["parts"].append(np.asarray(values, np.float64) if self.numeric else list(values))
        self.ref_stale = True
        return True

    def build_explicit(self, cfg: ModelDriftConfig) -> bool:
        """Rebuild the reference from the newest chunks. Returns True if window state was reset
        (bins changed while windows already held data — documented: a reference that keeps
        growing after predictions started restarts that feature's open windows)."""
        created_at = max(self.chunks)
        parts = self.chunks[created_at]["parts"]
        if self.numeric:
            values = np.concatenate([np.asarray(p, np.float64) for p in parts]) if parts else np.zeros(0)
            ref = Reference.numeric(values, cfg.bins, cfg.reference_exact_max, cfg.sketch_k, created_at)
        else:
            ref = Reference.categorical(np.asarray([v for p in parts for v in p], dtype=object),
                                        cfg.max_categories, created_at)
        had_data = bool(self.slots)
        self.ref, self.ref_source, self.ref_stale = ref, "explicit", False
        self.collecting, self.collected = [], 0
        self.slots.clear()
        self.events.clear()
        return had_data

    def collect_frozen(self, values: np.ndarray, valid: np.ndarray, cfg: ModelDriftConfig) -> int:
        """Frozen-reference mode: take the first ``reference_events`` valid values as the reference.

        Returns how many leading events of this batch were consumed by the reference (the rest
        are counted in windows)."""
        need = cfg.reference_events - self.collected
        pos = np.flatnonzero(valid)
        take = pos[:need]
        self.collecting.append(values[take])
        self.collected += int(take.size)
        if self.collected < cfg.reference_events:
            return int(values.size)
        ref_vals = np.concatenate(self.collecting)
        if self.numeric:
            self.ref = Reference.numeric(ref_vals.astype(np.float64), cfg.bins, cfg.reference_exact_max, cfg.sketch_k)
        else:
            self.ref = Reference.categorical(ref_vals, cfg.max_categories)
        self.ref_source, self.collecting = "frozen", []
        return int(take[-1]) + 1

    # -- window updates (vectorised) --------------------------------------------------------------
    def update(self, u: np.ndarray, inv: np.ndarray, values: np.ndarray, valid: np.ndarray,
               cfg: ModelDriftConfig) -> None:
        """Count ``values`` (one per accepted event) into the slots ``u[inv]``.

        One bincount over (slot, bin) pairs for the whole batch; values are split per slot only
        when the batch spans several slots (rare: a batch is usually one slot)."""
        ref = self.ref
        assert ref is not None
        nb = ref.nbins
        ev = np.bincount(inv, minlength=u.size)
        v = values[valid]
        g = inv[valid]
        idx = ref.bin_numeric(v) if self.numeric else ref.bin_categorical(v)
        counts = np.bincount(g * nb + idx, minlength=u.size * nb).reshape(u.size, nb)
        if u.size == 1:
            groups = [(v, idx)]
        else:
            order = np.argsort(g, kind="stable")
            cuts = np.cumsum(np.bincount(g, minlength=u.size))[:-1]
            groups = list(zip(np.split(v[order], cuts), np.split(idx[order], cuts)))
        other = nb - 1
        for i, (vals, bins_i) in enumerate(groups):
            j = int(u[i])
            self.events[j] = self.events.get(j, 0) + int(ev[i])
            slot = self.slots.get(j)
            if slot is None:
                slot = self.slots[j] = FeatureSlot(counts=np.zeros(nb, np.int64))
            slot.counts += counts[i]
            if self.numeric:
                if vals.size:
                    slot.add_numeric(vals, cfg.slot_raw_cap, cfg.sketch_k)
            else:
                slot.n += int(vals.size)
                if len(slot.unseen) < UNSEEN_NAMES_PER_SLOT:
                    new = vals[bins_i == other]
                    for name in (np.unique(new.astype(str)) if new.size else ()):
                        if len(slot.unseen) >= UNSEEN_NAMES_PER_SLOT:
                            break
                        slot.unseen.add(str(name))

    def total(self, slots: range, cfg: ModelDriftConfig) -> tuple[WindowTotal, int] | None:
        present = [self.slots[j] for j in slots if j in self.slots]
        events = sum(self.events.get(j, 0) for j in slots)
        if not present or self.ref is None:
            return None
        return sum_slots(present, self.ref.nbins, self.numeric, cfg.exact_max_values, cfg.sketch_k), events

    def evict(self, clock: Clock) -> None:
        for j in [j for j in self.slots if clock.evictable(j)]:
            del self.slots[j]
        for j in [j for j in self.events if clock.evictable(j)]:
            del self.events[j]

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "ref_source": self.ref_source,
                             "ref": self.ref.to_dict() if self.ref is not None else None,
                             "slots": {str(j): s.to_dict(self.numeric) for j, s in self.slots.items()},
                             "events": {str(j): n for j, n in self.events.items()},
                             "collected": self.collected}
        if self.collecting:
            vals = np.concatenate(self.collecting)
            d["collecting"] = sk.array_to_b64(vals) if self.numeric else [str(x) for x in vals]
        if self.chunks and (self.ref is None or self.ref_stale):
            # only while a reference is still being assembled (normally never: built in the same batch)
            d["chunks"] = {c: {"digests": e["digests"], "parts": [list(map(float, p)) if self.numeric else p
                                                                  for p in e["parts"]]}
                           for c, e in self.chunks.items()}
        return d

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> "FeatureState":
        f = cls(name=name, kind=d["kind"], ref_source=d.get("ref_source", ""))
        if d.get("ref"):
            f.ref = Reference.from_dict(d["ref"])
        f.slots = {int(j): FeatureSlot.from_dict(s) for j, s in d.get("slots", {}).items()}
        f.events = {int(j): int(n) for j, n in d.get("events", {}).items()}
        f.collected = int(d.get("collected", 0))
        if "collecting" in d:
            c = d["collecting"]
            f.collecting = [sk.array_from_b64(c) if f.numeric else np.asarray(c, dtype=object)]
        if "chunks" in d:
            f.chunks = d["chunks"]
            f.ref_stale = True
        return f


@dataclass
class PerfSlot:
    """Label-based performance counts of one slot (all additive)."""

    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    pos_hist: np.ndarray = field(default_factory=lambda: np.zeros(PROB_BINS, np.int64))
    neg_hist: np.ndarray = field(default_factory=lambda: np.zeros(PROB_BINS, np.int64))
    reg_n: int = 0
    reg_abs: float = 0.0
    reg_sq: float = 0.0

    def add_confusion(self, label: np.ndarray, pred: np.ndarray, size: int) -> None:
        if self.confusion.shape[0] < size:
            grown = np.zeros((size, size), np.int64)
            k = self.confusion.shape[0]
            grown[:k, :k] = self.confusion
            self.confusion = grown
        np.add.at(self.confusion, (label, pred), 1)

    def to_dict(self) -> dict[str, Any]:
        return {"confusion": self.confusion.tolist(), "pos": self.pos_hist.tolist(), "neg": self.neg_hist.tolist(),
                "reg": [self.reg_n, self.reg_abs, self.reg_sq]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PerfSlot":
        cm = np.asarray(d["confusion"], np.int64)
        return cls(confusion=cm.reshape(len(d["confusion"]), -1) if cm.size else np.zeros((0, 0), np.int64),
                   pos_hist=np.asarray(d["pos"], np.int64), neg_hist=np.asarray(d["neg"], np.int64),
                   reg_n=int(d["reg"][0]), reg_abs=float(d["reg"][1]), reg_sq=float(d["reg"][2]))


@dataclass
class ModelState:
    tenant: str
    project: str
    model: str
    version: str
    cfg: ModelDriftConfig
    clock: Clock
    features: dict[str, FeatureState] = field(default_factory=dict)
    events: dict[int, int] = field(default_factory=dict)  # accepted events per slot
    perf: dict[int, PerfSlot] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)  # label/prediction vocabulary
    volumes: list[int] = field(default_factory=list)  # events of recent final windows
    perf_baseline: dict[str, float] = field(default_factory=dict)
    pending: OrderedDict[str, tuple[float, str, float, float]] = field(default_factory=OrderedDict)
    last_emit: float = 0.0
    dirty: bool = False
    refs_loaded: bool = False
    batch_max_event: float | None = None  # newest event time of the batch being handled
    reset_slots: bool = False  # restored with a different window shape: drop slot state

    @property
    def key(self) -> str:
        return f"{self.project}/{self.model}/{self.version}"

    def class_code(self, name: str) -> int | None:
        code = self.classes.get(name)
        if code is None and len(self.classes) < MAX_LABEL_CLASSES:
            code = self.classes[name] = len(self.classes)
        return code

    def live_slots(self) -> list[int]:
        return sorted(self.events)

    def evict(self) -> None:
        for j in [j for j in self.events if self.clock.evictable(j)]:
            del self.events[j]
        for j in [j for j in self.perf if self.clock.evictable(j)]:
            del self.perf[j]
        for f in self.features.values():
            f.evict(self.clock)
        # predictions whose windows all closed can no longer be joined with a label
        while self.pending:
            pid, (ts, *_rest) = next(iter(self.pending.items()))
            if not self.clock.evictable(math.floor(ts / self.clock.slide)):
                break
            self.pending.popitem(last=False)

    def to_dict(self) -> dict[str, Any]:
        return {"ident": [self.tenant, self.project, self.model, self.version],
                "window": [self.clock.size, self.clock.slide, self.clock.lateness],
                "clock": self.clock.to_dict(), "events": {str(j): n for j, n in self.events.items()},
                "perf": {str(j): p.to_dict() for j, p in self.perf.items()}, "classes": self.classes,
                "volumes": self.volumes, "perf_baseline": self.perf_baseline,
                "features": sorted(self.features), "last_emit": self.last_emit, "dirty": self.dirty}
