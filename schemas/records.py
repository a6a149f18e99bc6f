"""pydantic v2 models of every record the pipeline moves or stores.

Field names equal ClickHouse column names (snake_case), so a model's ``model_dump()`` is a row.
Derived streams (drift results, eval scores, alerts) travel on Kafka as the JSON of these models.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SpanType = Literal["llm", "tool", "retriever", "agent", "chain", "guardrail", "general"]
ScoreSource = Literal["sdk", "ui", "online", "offline"]
AlertStatus = Literal["firing", "resolved"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpanEvent(Record):
    timestamp: datetime
    name: str
    attributes: dict[str, str] = {}


class SpanLink(Record):
    trace_id: str
    span_id: str
    trace_state: str = ""
    attributes: dict[str, str] = {}


class SpanRow(Record):
    """One row of ``spans``: the OTel Collector ClickHouse exporter layout plus LLM columns."""

    timestamp: datetime
    trace_id: str
    span_id: str
    parent_span_id: str = ""
    trace_state: str = ""
    span_name: str
    span_kind: str = "SPAN_KIND_INTERNAL"
    service_name: str = ""
    resource_attributes: dict[str, str] = {}
    scope_name: str = ""
    scope_version: str = ""
    span_attributes: dict[str, str] = {}
    duration_ns: int = 0
    status_code: str = "STATUS_CODE_UNSET"
    status_message: str = ""
    events: list[SpanEvent] = []
    links: list[SpanLink] = []
    tenant: str = ""
    project: str = ""
    span_type: str = "general"
    model: str = ""
    provider: str = ""
    input: str = ""
    output: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    session_id: str = ""
    user_id: str = ""
    tags: list[str] = []


class Experiment(Record):
    experiment_id: str
    tenant: str = ""
    project: str = ""
    workspace: str = ""
    name: str = ""
    status: Literal["running", "finished", "failed"] = "running"
    started_at: datetime
    ended_at: datetime | None = None
    tags: list[str] = []
    system: dict[str, str] = {}
    updated_at: datetime = Field(default_factory=utcnow)


class ExperimentParam(Record):
    experiment_id: str
    name: str
    value: str
    timestamp: datetime = Field(default_factory=utcnow)


class MetricPoint(Record):
    """One logged metric value. Every point is kept: (experiment_id, name, seq) is unique."""

    experiment_id: str
    name: str
    step: int = 0
    epoch: int = 0
    value: float
    timestamp: datetime
    seq: int = 0


class ExperimentAsset(Record):
    experiment_id: str
    name: str
    kind: Literal["asset", "model"] = "asset"
    uri: str
    size: int = 0
    sha256: str = ""
    metadata: dict[str, str] = {}
    timestamp: datetime = Field(default_factory=utcnow)


class RegistryEntry(Record):
    """A registered model version (``model_registry``)."""

    tenant: str = ""
    project: str = ""
    model: str
    version: str
    stage: Literal["none", "staging", "production", "archived"] = "none"
    experiment_id: str = ""
    uri: str = ""
    description: str = ""
    tags: list[str] = []
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Prediction(Record):
    tenant: str = ""
    project: str = ""
    model: str
    model_version: str = ""
    prediction_id: str
    timestamp: datetime
    numeric_features: dict[str, float] = {}
    categorical_features: dict[str, str] = {}
    missing_features: list[str] = []
    prediction: str = ""
    prediction_value: float | None = None
    probability: float | None = None
    label: str | None = None
    label_value: float | None = None
    labeled_at: datetime | None = None


class Label(Record):
    tenant: str = ""
    project: str = ""
    model: str
    model_version: str = ""
    prediction_id: str
    label: str
    label_value: float | None = None
    timestamp: datetime


class ReferenceFeature(Record):
    """The reference (training) distribution of one feature, set by ``MonitoredModel.set_reference``."""

    tenant: str = ""
    project: str = ""
    model: str
    model_version: str = ""
    feature: str
    kind: Literal["numeric", "categorical"]
    numeric_values: list[float] = []
    categorical_values: list[str] = []
    created_at: datetime = Field(default_factory=utcnow)


class DriftResult(Record):
    tenant: str = ""
    project: str = ""
    model: str
    model_version: str = ""
    feature: str  # a feature name, "__prediction__", "__dataset__" (share of drifted features) or "__performance__"
    metric: str  # psi | jensen_shannon | ks | wasserstein_norm | chi_square | hellinger | drift_share | ...
    value: float
    threshold: float
    drifted: bool
    p_value: float | None = None
    window_start: datetime
    window_end: datetime
    is_final: bool = False
    sample_size: int = 0
    reference_size: int = 0
    computed_at: datetime = Field(default_factory=utcnow)
    # True for the test chosen for this feature (the one `drifted` and the dataset drift share
    # follow); False for the other metrics of the same feature, shown for context (migration 0020).
    is_primary: bool = True


class DataQuality(Record):
    tenant: str = ""
    project: str = ""
    model: str
    model_version: str = ""
    feature: str
    metric: str  # missing_rate | out_of_range_share | unseen_categories | volume_ratio
    value: float
    window_start: datetime
    window_end: datetime
    is_final: bool = False
    computed_at: datetime = Field(default_factory=utcnow)


class EvalScore(Record):
    tenant: str = ""
    project: str = ""
    entity_type: Literal["span", "trace"] = "span"
    entity_id: str
    trace_id: str = ""
    name: str
    value: float
    reason: str = ""
    source: ScoreSource = "online"
    category: str = ""
    annotator: str = ""
    scorer_version: str = ""
    rule: str = ""
    timestamp: datetime = Field(default_factory=utcnow)


class Alert(Record):
    """One alert transition; ``alerts`` keeps every transition as queryable history."""

    rule: str
    fingerprint: str
    status: AlertStatus
    severity: str = "warning"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    value: float = 0.0
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = ""
    transition_at: datetime = Field(default_factory=utcnow)
