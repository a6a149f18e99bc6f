"""Reference distributions and the frozen bins every window is counted on.

A :class:`Reference` is built once from the reference values (``MonitoredModel.set_reference``
or the frozen first N events of a feature) and then never changes, so window counts on its bins
stay comparable and can be added and subtracted slot by slot.

Numeric bins: quantile edges of the reference (``bins`` equal-mass bins, duplicate edges merged),
or — when the reference has at most ``bins`` distinct values — one bin per distinct value. Two
extra bins hold values below the reference minimum and above its maximum; they are empty in the
reference, so they carry the out-of-range share and push PSI/JS up when new values appear.

Categorical bins: the reference's ``max_categories`` most frequent categories, plus one bin for
everything else (categories unseen in the reference, or beyond the cap).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from orbitwatch.processors.drift import sketch as sk


@dataclass
class Reference:
    kind: Literal["numeric", "categorical"]
    n: int
    counts: np.ndarray  # reference counts per bin (int64)
    # numeric
    lo: float = 0.0
    hi: float = 0.0
    inner: np.ndarray = field(default_factory=lambda: np.zeros(0))  # interior bin edges
    mean: float = 0.0
    std: float = 0.0
    n_unique: int = 0
    sample: sk.Sample | None = None  # exact sorted values or KLL sketch, for KS/Wasserstein
    # categorical
    categories: list[str] = field(default_factory=list)
    created_at: str = ""
    _index: dict[str, int] | None = field(default=None, repr=False, compare=False)
    _dict: dict[str, Any] | None = field(default=None, repr=False, compare=False)  # to_dict cache

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def numeric(cls, values: np.ndarray, bins: int, exact_max: int, sketch_k: int,
                created_at: str = "") -> "Reference":
        v = np.asarray(values, np.float64)
        v = np.sort(v[np.isfinite(v)])
        if v.size == 0:
            raise ValueError("reference has no finite numeric values")
        uniq = np.unique(v)
        if uniq.size <= bins:
            inner = (uniq[:-1] + uniq[1:]) / 2.0  # one bin per distinct value
        else:
            edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, bins + 1)))
            inner = edges[1:-1]
        if v.size <= exact_max:
            sample = sk.Sample(n=int(v.size), values=v)
        else:
            s = sk.new_sketch(sketch_k)
            s.update(v)
            sample = sk.Sample(n=int(v.size), sketch=s)
        ref = cls(kind="numeric", n=int(v.size), counts=np.zeros(inner.size + 3, np.int64), lo=float(v[0]),
                  hi=float(v[-1]), inner=inner, mean=float(v.mean()), std=float(v.std()),
                  n_unique=int(uniq.size), sample=sample, created_at=created_at)
        ref.counts = np.bincount(ref.bin_numeric(v), minlength=ref.nbins).astype(np.int64)
        return ref

    @classmethod
    def categorical(cls, values: np.ndarray | list[str], max_categories: int, created_at: str = "") -> "Reference":
        arr = np.asarray(values, dtype=object)
        if arr.size == 0:
            raise ValueError("reference has no categorical values")
        cats, counts = np.unique(arr.astype(str), return_counts=True)
        order = np.lexsort((cats, -counts))[:max_categories]  # most frequent first, ties by name
        ref = cls(kind="categorical", n=int(arr.size), counts=np.zeros(0, np.int64),
                  categories=[str(c) for c in cats[order]], n_unique=int(cats.size), created_at=created_at)
        ref.counts = np.bincount(ref.bin_categorical(arr.astype(str)), minlength=ref.nbins).astype(np.int64)
        return ref

    # -- binning (vectorised) ---------------------------------------------------------------------
    @property
    def nbins(self) -> int:
        """Numeric: below-min, regular bins, above-max. Categorical: categories + one "other" bin."""
        return self.inner.size + 3 if self.kind == "numeric" else len(self.categories) + 1

    def bin_numeric(self, v: np.ndarray) -> np.ndarray:
        """Bin index of finite values: 0 below the reference min, nbins-1 above its max."""
        idx = np.searchsorted(self.inner, v, side="right") + 1
        idx[v < self.lo] = 0
        idx[v > self.hi] = self.nbins - 1
        return idx

    def bin_categorical(self, v: np.ndarray) -> np.ndarray:
        """Bin index of category strings; unknown categories go to the last ("other") bin."""
        if v.size == 0:
            return np.zeros(0, np.int64)
        uniq, inv = np.unique(v, return_inverse=True)
        lookup = self._cat_index()
        other = len(self.categories)
        codes = np.fromiter((lookup.get(u, other) for u in uniq), np.int64, count=uniq.size)
        return codes[inv.reshape(-1)]

    def _cat_index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {c: i for i, c in enumerate(self.categories)}
        return self._index

    def default_method(self, small_reference: int) -> str:
        """Evidently's defaults: KS (small ref) / normalised Wasserstein (large ref) for numeric;
        chi-square (small) / Jensen–Shannon (large) for categorical and numeric with <= 5 values."""
        if self.kind == "categorical" or self.n_unique <= 5:
            return "chi_square" if self.n <= small_reference else "jensen_shannon"
        return "ks" if self.n <= small_reference else "wasserstein_norm"

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; cached, since a reference never changes once built (snapshots are frequent)."""
        if self._dict is None:
            self._dict = self._to_dict()
        return self._dict

    def _to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "n": self.n, "counts": self.counts.tolist(),
                             "n_unique": self.n_unique, "created_at": self.created_at}
        if self.kind == "numeric":
            assert self.sample is not None
            d.update(lo=self.lo, hi=self.hi, inner=sk.array_to_b64(self.inner), mean=self.mean, std=self.std)
            if self.sample.exact:
                d["values"] = sk.array_to_b64(self.sample.values)  # type: ignore[arg-type]
            else:
                d["sketch"] = sk.sketch_to_b64(self.sample.sketch)  # type: ignore[arg-type]
        else:
            d["categories"] = self.categories
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Reference":
        counts = np.asarray(d["counts"], np.int64)
        if d["kind"] == "numeric":
            if "values" in d:
                sample = sk.Sample(n=int(d["n"]), values=sk.array_from_b64(d["values"]))
            else:
                sample = sk.Sample(n=int(d["n"]), sketch=sk.sketch_from_b64(d["sketch"]))
            return cls(kind="numeric", n=int(d["n"]), counts=counts, lo=d["lo"], hi=d["hi"],
                       inner=sk.array_from_b64(d["inner"]), mean=d["mean"], std=d["std"],
                       n_unique=d["n_unique"], sample=sample, created_at=d.get("created_at", ""))
        return cls(kind="categorical", n=int(d["n"]), counts=counts, categories=list(d["categories"]),
                   n_unique=d["n_unique"], created_at=d.get("created_at", ""))
