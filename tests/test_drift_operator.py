"""The drift processor writing real rows into embedded ClickHouse (chdb)."""
from __future__ import annotations

import numpy as np

from orbitwatch.processors.drift import DriftProcessor, load_config
from orbitwatch.processors.drift import synthetic as syn
from orbitwatch.schemas import envelope

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 3600)
FEATURES = ["age", "income", "score", "tenure"]


def test_drift_results_flag_only_the_shifted_feature(storage) -> None:
    rng = np.random.default_rng(42)
    p = DriftProcessor(load_config(window_seconds=600, allowed_lateness_seconds=30, emit_interval_seconds=60),
                       storage)
    refs = syn.references(rng, FEATURES, 5000, chunk=2000, categorical={"plan": ["free", "pro", "team"]})
    preds = syn.predictions(rng, FEATURES, 6000, T0, rate=2.0, shift={"income": 0.5}, shift_from=T0 + 1200,
                            categorical={"plan": ["free", "pro", "team"]}, labels=True)
    msgs = syn.messages(refs + preds)
    emits = []
    for i in range(0, len(msgs), 400):
        emits += p.handle(msgs[i:i + 400])
        emits += p.tick(1000.0 + i)  # provisional rows for the open window, later replaced
    assert all(e.topic == "orbitwatch.drift" and e.key == b"p/m/1" for e in emits)

    rows = storage.query_dicts(
        "SELECT feature, metric, drifted, toUnixTimestamp(window_start) AS ws, sample_size, is_final "
        "FROM drift_results FINAL WHERE project = 'p' AND is_primary AND feature NOT LIKE '\\\\_\\\\_%' "
        "ORDER BY ws, feature")
    final = [r for r in rows if r["is_final"]]
    assert {r["feature"] for r in final} == set(FEATURES) | {"plan"}
    drifted = {(r["ws"] - T0, r["feature"]) for r in final if r["drifted"]}
    # income shifts from T0+1200 on: every final window from there flags it, nothing else flags
    assert drifted == {(w, "income") for w in (1200.0, 1800.0)}  # [2400, 3000) is still open
    assert {r["metric"] for r in final if r["feature"] == "income"} == {"wasserstein_norm"}
    assert {r["metric"] for r in final if r["feature"] == "plan"} == {"jensen_shannon"}

    # provisional rows of a window are replaced by its final row (ReplacingMergeTree(computed_at))
    per_window = storage.query(
        "SELECT window_start, count(), max(is_final) FROM drift_results FINAL WHERE project = 'p' "
        "AND feature = 'income' AND metric = 'wasserstein_norm' GROUP BY window_start ORDER BY window_start")[1]
    assert all(n == 1 for _, n, _ in per_window)
    assert [bool(f) for _, _, f in per_window] == [True] * 4 + [False]

    dataset = storage.query_dicts("SELECT toUnixTimestamp(window_start) - {t:Int64} AS w, value, drifted "
                                  "FROM drift_results FINAL WHERE feature = '__dataset__' AND is_final "
                                  "ORDER BY w", {"t": int(T0)})
    assert [d["value"] for d in dataset] == [0.0, 0.0, 0.2, 0.2]  # 1 of 5 features
    assert not any(d["drifted"] for d in dataset)

    quality = {(r[0], r[1]) for r in storage.query(
        "SELECT feature, metric FROM data_quality FINAL WHERE project = 'p' AND is_final")[1]}
    assert {("income", "missing_rate"), ("income", "out_of_range_share"), ("plan", "unseen_share"),
            ("__dataset__", "volume"), ("__dataset__", "volume_ratio")} <= quality
    perf = storage.query_dicts("SELECT metric, value FROM drift_results FINAL WHERE feature = '__performance__' "
                               "AND is_final")
    assert {r["metric"] for r in perf} == {"accuracy", "f1", "auc"}
    # labels drawn with P(label=1) = probability: the model is informative, AUC well above 0.5
    assert all(r["value"] > 0.65 for r in perf if r["metric"] == "auc")
    # every envelope on the topic is a row in ClickHouse, and vice versa for finals
    final_topic = [envelope.decode(e.value) for e in emits]
    n_final = sum(1 for x in final_topic if x.is_final)
    n_rows = storage.scalar("SELECT count() FROM drift_results FINAL WHERE is_final") + \
        storage.scalar("SELECT count() FROM data_quality FINAL WHERE is_final")
    assert n_final == n_rows


def test_references_are_loaded_from_clickhouse_when_the_stream_has_none(storage) -> None:
    """A worker that starts without state finds the references the sink stored."""
    rng = np.random.default_rng(7)
    refs = syn.references(rng, ["x", "y"], 3000)
    storage.insert_models("reference_features", refs)
    p = DriftProcessor(load_config(window_seconds=600, allowed_lateness_seconds=0), storage)
    p.handle(syn.messages(refs))  # the same reference also arrives on the stream: recognised, not doubled
    x = p.models[("", "p", "m", "1")].features["x"]
    assert x.ref.n == 3000 and [len(c["digests"]) for c in x.chunks.values()] == [1]
    p.handle(syn.messages(syn.predictions(rng, ["x", "y"], 2500, T0, rate=2.0, shift={"y": 1.0},
                                          shift_from=T0)))
    rows = storage.query_dicts("SELECT feature, drifted, reference_size FROM drift_results FINAL "
                               "WHERE is_primary AND is_final AND feature IN ('x', 'y')")
    assert rows and {r["reference_size"] for r in rows} == {3000}
    assert {r["feature"] for r in rows if r["drifted"]} == {"y"}


def test_results_wait_in_the_outbox_while_clickhouse_is_unavailable(storage, clickhouse_dsn) -> None:
    """Rows that cannot be written are kept (and snapshotted), handle refuses new input with a
    RetryableError until they are written, so nothing is counted twice or lost."""
    import pytest

    from orbitwatch.processors.base import RetryableError
    from orbitwatch.storage import Storage

    rng = np.random.default_rng(8)
    p = DriftProcessor(load_config(window_seconds=600, allowed_lateness_seconds=0), storage)
    p.handle(syn.messages(syn.references(rng, ["x"], 2000)))
    storage.close()  # the engine is gone: inserts fail
    out = p.handle(syn.messages(syn.predictions(rng, ["x"], 1300, T0, rate=2.0)))
    assert out and p.outbox
    waiting = len(p.outbox)
    snap = p.snapshot()
    with pytest.raises(RetryableError):
        p.handle(syn.messages(syn.predictions(rng, ["x"], 10, T0 + 700, rate=1.0, id_prefix="z")))
    st = Storage(clickhouse_dsn)
    try:
        p2 = DriftProcessor(load_config(window_seconds=600, allowed_lateness_seconds=0), st)
        p2.restore(snap)
        assert len(p2.outbox) == waiting
        p2.tick(0.0)
        assert p2.outbox == []
        assert st.scalar("SELECT count() FROM drift_results FINAL WHERE is_final") > 0
    finally:
        st.close()
