"""MonitoredModel → prediction.batch spans carrying Prediction/Label/ReferenceFeature JSON."""
from __future__ import annotations

import datetime as dt
import enum
import json

import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import orbitwatch
from orbitwatch import MonitoredModel
from orbitwatch.monitoring import REFERENCE_CHUNK
from orbitwatch.schemas import attributes as A
from orbitwatch.schemas.records import Label, Prediction, ReferenceFeature


@pytest.fixture
def mem(unique):
    exporter = InMemorySpanExporter()
    orbitwatch.configure(exporter=exporter, project=f"proj-{unique}")
    yield exporter


def records(exporter, event):
    assert orbitwatch.flush(10)
    out = []
    for s in exporter.get_finished_spans():
        if s.attributes.get(A.KIND) == "prediction.batch":
            out += [(s, json.loads(e.attributes[A.PAYLOAD])) for e in s.events if e.name == event]
    return out


class Plan(enum.Enum):
    GOLD = "gold"


def test_predictions_and_late_labels(mem):
    model = MonitoredModel("churn", "v3")
    ts = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    model.log_prediction("p-1", {"age": 31, "income": np.float64(5.5), "n": np.int64(2), "city": "Paris",
                                 "vip": True, "flag": np.bool_(False), "plan": Plan.GOLD, "x": None,
                                 "y": float("nan")}, prediction=1, probability=0.8, timestamp=ts)
    model.log_prediction("p-2", {"age": 40}, prediction="churn", label="stay", timestamp=ts.timestamp())
    model.log_label("p-1", 0)
    (s1, p1), (_, p2) = records(mem, "prediction")
    assert s1.attributes[A.MODEL_NAME] == "churn" and s1.attributes[A.MODEL_VERSION] == "v3"
    assert s1.attributes[A.PROJECT].startswith("proj-")
    pred = Prediction.model_validate(p1)
    assert pred.numeric_features == {"age": 31.0, "income": 5.5, "n": 2.0}
    assert pred.categorical_features == {"city": "Paris", "vip": "True", "flag": "False", "plan": "gold"}
    assert sorted(pred.missing_features) == ["x", "y"]
    assert pred.prediction == "1" and pred.prediction_value == 1.0 and pred.probability == 0.8
    assert pred.timestamp == ts and pred.model_version == "v3"
    p2 = Prediction.model_validate(p2)
    assert p2.prediction == "churn" and p2.prediction_value is None and p2.label == "stay" and p2.timestamp == ts
    ((_, lab),) = records(mem, "label")
    lab = Label.model_validate(lab)
    assert lab.prediction_id == "p-1" and lab.label == "0" and lab.label_value == 0.0


def test_bad_features_fail_clearly(mem):
    model = MonitoredModel("m")
    with pytest.raises(TypeError, match="feature 'v'"):
        model.log_prediction("p", {"v": [1, 2]}, prediction=1)
    with pytest.raises(TypeError, match="dict"):
        model.log_prediction("p", [1, 2], prediction=1)
    with pytest.raises(TypeError, match="DataFrame"):
        model.set_reference([1, 2, 3])


def test_reference_from_dataframe_is_typed_by_dtype_and_chunked(mem):
    n = REFERENCE_CHUNK + 10
    df = pd.DataFrame({
        "age": np.arange(n),
        "income": np.where(np.arange(n) % 2 == 0, np.nan, 1.5),
        "city": pd.Series(["a", "b"] * (n // 2), dtype="category"),
        "vip": np.arange(n) % 3 == 0,
    })
    model = MonitoredModel("churn", "v1")
    sent = model.set_reference(df)
    refs = [ReferenceFeature.model_validate(r) for _, r in records(mem, "reference")]
    assert sent == len(refs) == 2 + 1 + 2 + 2  # income has n/2 values: one chunk
    by = {}
    for r in refs:
        by.setdefault(r.feature, []).append(r)
    assert {f: rs[0].kind for f, rs in by.items()} == {"age": "numeric", "income": "numeric",
                                                       "city": "categorical", "vip": "categorical"}
    assert len({r.created_at for r in refs}) == 1
    age = [v for r in by["age"] for v in r.numeric_values]
    assert age == [float(i) for i in range(n)]
    assert len(by["income"][0].numeric_values) == n // 2  # NaN left out
    assert set(by["vip"][0].categorical_values) == {"True", "False"}
    chunk_attrs = [(json.loads(e.attributes[A.PAYLOAD])["feature"], e.attributes[A.REFERENCE_CHUNK],
                    e.attributes[A.REFERENCE_CHUNKS]) for s in mem.get_finished_spans() for e in s.events
                   if e.name == "reference"]
    assert [c for c in chunk_attrs if c[0] == "age"] == [("age", 0, 2), ("age", 1, 2)]
    assert [c for c in chunk_attrs if c[0] == "income"] == [("income", 0, 1)]


def test_reference_from_dict_of_lists_and_arrays(mem):
    model = MonitoredModel("m", "1")
    model.set_reference({"x": [1, 2.5, None], "tier": np.array(["a", "b"]), "mixed": ["a", 1]})
    refs = {r["feature"]: r for _, r in records(mem, "reference")}
    assert refs["x"]["kind"] == "numeric" and refs["x"]["numeric_values"] == [1.0, 2.5]
    assert refs["tier"]["kind"] == "categorical" and refs["tier"]["categorical_values"] == ["a", "b"]
    assert refs["mixed"]["kind"] == "categorical" and refs["mixed"]["categorical_values"] == ["a", "1"]
