"""Drift configuration per model, from YAML (``ORBITWATCH_DRIFT_CONFIG``) with safe defaults.

```yaml
default:                 # applies to every model
  window_seconds: 3600
  slide_seconds: 300     # sliding 1 h windows every 5 min (omit for tumbling)
models:
  "fraud/scorer/v3":     # "project/model/version", "project/model" or "model"
    bins: 30
    expected_volume: 5000
    features:
      amount: {method: psi, threshold: 0.2}
```

A model's section is merged over ``default`` (more specific keys win), then validated: a wrong
value raises :class:`DriftConfigError` naming the model and the field.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orbitwatch.processors.drift.stats import DEFAULT_THRESHOLDS

CONFIG_ENV = "ORBITWATCH_DRIFT_CONFIG"

Method = Literal["auto", "psi", "jensen_shannon", "ks", "wasserstein_norm", "chi_square", "hellinger"]


class DriftConfigError(ValueError):
    """The drift configuration file is missing, not YAML, or has a value we cannot use."""


class FeatureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Method = "auto"
    threshold: float | None = None  # overrides the metric's threshold for this feature


class ModelDriftConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_seconds: float = Field(3600.0, gt=0)
    slide_seconds: float | None = Field(None, gt=0)  # None: tumbling (slide = window)
    allowed_lateness_seconds: float = Field(60.0, ge=0)
    emit_interval_seconds: float = Field(60.0, gt=0)
    bins: int = Field(20, ge=2, le=1000)
    max_categories: int = Field(100, ge=1, le=10_000)
    sketch_k: int = Field(200, ge=8, le=65535)
    exact_max_values: int = Field(2000, ge=0, le=100_000)  # per window: raw values kept for exact KS
    reference_exact_max: int = Field(5000, ge=0, le=100_000)  # reference values kept raw (else KLL)
    reference: Literal["auto", "explicit", "frozen"] = "auto"
    reference_events: int = Field(1000, ge=10)  # frozen mode: first N values of a feature
    small_reference: int = Field(1000, ge=0)  # Evidently: <= this uses KS / chi-square
    method: Method = "auto"  # for all features unless set per feature
    thresholds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    features: dict[str, FeatureConfig] = Field(default_factory=dict)
    fdr_alpha: float | None = Field(0.05, gt=0, lt=1)  # Benjamini–Hochberg across features; None: off
    # A flag needs a change that is both material and significant: a distance test (PSI, JS,
    # Wasserstein, Hellinger) also needs the feature's p-value test (KS numeric, chi-square
    # categorical) to reject after BH; a p-value test also needs the effect size (normalised
    # Wasserstein numeric, JS categorical) above its threshold. Either can be switched off.
    require_significance: bool = True
    require_effect: bool = True
    # The effect size (normalised Wasserstein / JS) must clear its threshold by this many units of
    # its sampling noise, sqrt(1/n + 1/m) (scaled for JS by sqrt((bins-1) / (8 ln 2))): a reference
    # of 1000 values is itself noisy, and without this margin a slightly atypical reference sample
    # gets flagged window after window once windows are large. 0 disables it.
    noise_margin: float = Field(2.0, ge=0)
    drift_share: float = Field(0.5, gt=0, le=1)  # dataset drifted when this share of features drift
    min_sample: int = Field(100, ge=1)  # windows with fewer values never flag a distance metric
    expected_volume: float | None = Field(None, gt=0)  # events per window; None: mean of recent finals
    performance_drop: float = Field(0.1, ge=0)  # relative drop vs the first final window that flags
    positive_label: str = "1"
    max_pending_predictions: int = Field(100_000, ge=0)  # awaiting labels, per model
    # events stamped further than this in the future (wall clock) are dropped and counted: one bad
    # client clock must not push the watermark ahead and make everyone else's events late
    max_future_seconds: float = Field(86_400.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> "ModelDriftConfig":
        slide = self.slide_seconds or self.window_seconds
        ratio = self.window_seconds / slide
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"window_seconds ({self.window_seconds}) must be a multiple of slide_seconds ({slide})")
        if round(ratio) > 1000:
            raise ValueError("window_seconds / slide_seconds must be <= 1000 slots")
        unknown = set(self.thresholds) - set(DEFAULT_THRESHOLDS)
        if unknown:
            raise ValueError(f"unknown metric(s) in thresholds: {sorted(unknown)}")
        self.thresholds = {**DEFAULT_THRESHOLDS, **self.thresholds}
        return self

    @property
    def slide(self) -> float:
        return self.slide_seconds or self.window_seconds

    @property
    def slot_raw_cap(self) -> int:
        """Raw values one slot keeps for exact KS: exact_max_values / slots per window, so a window
        whose slots all stayed under it is exact and raw memory stays ~exact_max_values per feature."""
        return -(-self.exact_max_values // round(self.window_seconds / self.slide))

    def method_for(self, feature: str) -> str:
        fc = self.features.get(feature)
        return fc.method if fc is not None and fc.method != "auto" else self.method

    def threshold_for(self, feature: str, metric: str) -> float:
        fc = self.features.get(feature)
        if fc is not None and fc.threshold is not None and fc.method == metric:
            return fc.threshold
        return self.thresholds[metric]


class DriftConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def for_model(self, project: str, model: str, version: str) -> ModelDriftConfig:
        merged = dict(self.default)
        for key in (model, f"{project}/{model}", f"{project}/{model}/{version}"):
            merged.update(self.models.get(key, {}))
        try:
            return ModelDriftConfig.model_validate(merged)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "config"
            raise DriftConfigError(f"drift config for {project}/{model}/{version}: {where}: {err['msg']}") from None

    def validate_all(self) -> None:
        """Fail fast at start-up rather than on the first prediction of a misconfigured model."""
        for key, section in {"default": {}, **self.models}.items():
            try:
                ModelDriftConfig.model_validate({**self.default, **section})
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(x) for x in err["loc"]) or "config"
                raise DriftConfigError(f"drift config for {key}: {where}: {err['msg']}") from None


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> DriftConfig:
    """Load ``path`` (or ``$ORBITWATCH_DRIFT_CONFIG``; none: defaults); ``overrides`` go into ``default``."""
    path = path or os.environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = {}
    if path:
        import yaml
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise DriftConfigError(f"cannot read drift config {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise DriftConfigError(f"drift config {path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise DriftConfigError(f"drift config {path}: expected a mapping with 'default' and/or 'models'")
    raw.setdefault("default", {})
    raw["default"] = {**raw["default"], **overrides}
    try:
        cfg = DriftConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise DriftConfigError(f"drift config: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    cfg.validate_all()
    return cfg
