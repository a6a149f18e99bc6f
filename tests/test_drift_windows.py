"""Event-time windows of the drift processor: lateness, provisional vs final, restore, references."""
from __future__ import annotations

import json

import numpy as np
import pytest

from orbitwatch.processors.base import Message
from orbitwatch.processors.drift import DriftProcessor, load_config
from orbitwatch.processors.drift import sketch as sk
from orbitwatch.processors.drift import synthetic as syn
from orbitwatch.processors.drift.config import DriftConfigError
from orbitwatch.schemas import envelope
from orbitwatch.schemas import records as r

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 3600)  # an hour boundary, so windows align


def decoded(emits) -> list[r.DriftResult | r.DataQuality]:
    return [envelope.decode(e.value) for e in emits if e.topic == "orbitwatch.drift"]


def find(recs, feature: str, metric: str, final: bool | None = None):
    return [x for x in recs if x.feature == feature and x.metric == metric
            and (final is None or x.is_final == final)]


def proc(now: float = 0.0, **cfg) -> DriftProcessor:
    return DriftProcessor(load_config(**cfg), None, clock=lambda: now)


def test_late_events_within_lateness_update_their_window_and_later_ones_are_dropped() -> None:
    rng = np.random.default_rng(1)
    p = proc(window_seconds=60, allowed_lateness_seconds=30, emit_interval_seconds=5)
    out = p.handle(syn.messages(syn.references(rng, ["x"], 500)))
    on_time = syn.predictions(rng, ["x"], 120, T0, rate=2.0)  # t in [T0, T0+60)
    out += p.handle(syn.messages(on_time))
    out += p.handle(syn.messages(syn.predictions(rng, ["x"], 1, T0 + 80, 1.0, id_prefix="a")))
    assert not find(decoded(out), "__dataset__", "volume", final=True)  # watermark T0+50: still open
    out += p.handle(syn.messages(syn.predictions(rng, ["x"], 3, T0 + 55, 1.0, id_prefix="late")))  # late, in time
    out += p.handle(syn.messages(syn.predictions(rng, ["x"], 1, T0 + 100, 1.0, id_prefix="b")))  # closes [T0, T0+60)
    vol = find(decoded(out), "__dataset__", "volume", final=True)
    assert [(v.window_start.timestamp(), v.value) for v in vol] == [(T0, 123.0)]
    ks = find(decoded(out), "x", "ks", final=True)
    assert ks and ks[0].sample_size == 123 and ks[0].is_primary
    # too late: its only window is final already -> dropped (and counted), no new final for it
    out2 = p.handle(syn.messages(syn.predictions(rng, ["x"], 5, T0 + 10, 1.0, id_prefix="toolate")))
    assert not decoded(out2)
    assert sum(p.models[("", "p", "m", "1")].events.values()) == 2  # only T0+80 and T0+100 are live


def test_provisional_every_emit_interval_and_final_when_the_window_closes() -> None:
    rng = np.random.default_rng(2)
    p = proc(window_seconds=600, slide_seconds=200, allowed_lateness_seconds=0, emit_interval_seconds=60)
    p.handle(syn.messages(syn.references(rng, ["x"], 2000)))
    out = decoded(p.handle(syn.messages(syn.predictions(rng, ["x"], 300, T0, rate=1.0))))
    # the watermark (T0+299) already passed the end of the window ending at T0+200: final at once
    finals = find(out, "x", "wasserstein_norm", final=True)
    assert [(x.window_start.timestamp(), x.window_end.timestamp(), x.sample_size) for x in finals] == \
        [(T0 - 400, T0 + 200, 200)]
    first = decoded(p.tick(1000.0))
    assert first and all(not x.is_final for x in first)
    assert {x.window_end.timestamp() for x in first} == {T0 + 400}  # the window holding the newest event
    assert p.tick(1030.0) == []  # within emit_interval
    assert p.tick(1100.0) == []  # nothing new since the last emission
    out = decoded(p.handle(syn.messages(syn.predictions(rng, ["x"], 200, T0 + 300, rate=1.0, id_prefix="b"))))
    finals = find(out, "x", "wasserstein_norm", final=True)
    # the window ending at T0+400 closed; sliding: the sum of its three slots
    assert [(x.window_start.timestamp(), x.window_end.timestamp(), x.sample_size) for x in finals] == \
        [(T0 - 200, T0 + 400, 400)]
    again = decoded(p.tick(1200.0))
    assert {x.window_end.timestamp() for x in again} == {T0 + 600} and not any(x.is_final for x in again)


def run(p: DriftProcessor, batches: list[list[Message]], ticks: bool = True) -> list:
    out = []
    for i, b in enumerate(batches):
        out += p.handle(b)
        if ticks:
            out += p.tick(10_000.0 + 100 * i)
    return [x.model_dump(exclude={"computed_at"}) for x in decoded(out)]


def _restore_scenario(exact_max: int):
    rng = np.random.default_rng(3)
    cfg = dict(window_seconds=300, slide_seconds=100, allowed_lateness_seconds=20, emit_interval_seconds=50,
               exact_max_values=exact_max)
    recs = syn.references(rng, ["a", "b"], 3000, chunk=1000, categorical={"c": ["x", "y", "z"]})
    preds = syn.predictions(rng, ["a", "b"], 4000, T0, rate=2.0, shift={"b": 0.5}, shift_from=T0 + 1000,
                            categorical={"c": ["x", "y", "z"]}, labels=True)
    rng.shuffle(preds[1000:1200])  # some disorder within lateness
    msgs = syn.messages(recs + preds)
    batches = [msgs[i:i + 250] for i in range(0, len(msgs), 250)]
    half = len(batches) // 2

    whole = DriftProcessor(load_config(**cfg), None, clock=lambda: 5.0)
    run(whole, batches[:half])
    want_rest = run(whole, batches[half:])

    first = DriftProcessor(load_config(**cfg), None, clock=lambda: 5.0)
    run(first, batches[:half])
    snap = json.loads(json.dumps(first.snapshot()))  # what a runner persists
    assert max(len(json.dumps(v)) for v in snap.values()) < 500_000
    second = DriftProcessor(load_config(**cfg), None, clock=lambda: 5.0)
    second.restore(snap)
    return want_rest, run(second, batches[half:])


def test_restore_from_snapshot_gives_identical_subsequent_results() -> None:
    """Exact mode (raw values kept): a restored worker continues bit-for-bit like one never stopped."""
    want_rest, got_rest = _restore_scenario(exact_max=100_000)
    assert got_rest == want_rest
    assert any(x["feature"] == "b" and x.get("drifted") and x.get("is_primary") for x in want_rest)
    assert not any(x["feature"] == "a" and x.get("drifted") and x.get("is_primary") and x["is_final"] for x in want_rest)
    assert any(x["feature"] == "__performance__" and x["metric"] == "auc" for x in want_rest)


def test_restore_with_sketches_stays_within_the_sketch_error() -> None:
    """KLL compaction is randomised (no seed in the Python binding), so sketched KS/Wasserstein of a
    restored worker equal the uninterrupted ones within the stated error; everything else is identical."""
    want_rest, got_rest = _restore_scenario(exact_max=150)
    assert len(got_rest) == len(want_rest)
    sketched = 0
    for w, g in zip(want_rest, got_rest):
        if w["metric"] in ("ks", "wasserstein_norm") and w["sample_size"] > 150:
            sketched += 1
            tol = 2 * sk.kll_error(200) + 1 / sk.GRID_POINTS
            assert abs(w["value"] - g["value"]) <= (tol if w["metric"] == "ks" else 10 * tol)
        elif w["feature"] != "__dataset__":
            assert w == g
    assert sketched > 10


def test_frozen_reference_from_the_first_events() -> None:
    rng = np.random.default_rng(4)
    p = proc(window_seconds=600, allowed_lateness_seconds=0, reference="frozen", reference_events=2000)
    preds = syn.predictions(rng, ["a", "b"], 8000, T0, rate=2.0, shift={"a": 0.5}, shift_from=T0 + 2400)
    out = decoded(p.handle(syn.messages(preds)))
    ref_sizes = {x.reference_size for x in out if x.feature == "a" and isinstance(x, r.DriftResult)}
    assert ref_sizes == {2000}
    flagged = sorted((x.window_start.timestamp() - T0, x.feature) for x in out
                     if isinstance(x, r.DriftResult) and x.is_primary and x.drifted and x.is_final)
    # the first 1000 s are the reference; 1000-2400 is stationary; a shifts from 2400 s on
    assert flagged and all(f in ("a", "__dataset__") for _, f in flagged)
    assert min(t for t, f in flagged if f == "a") == 2400.0


def test_explicit_reference_chunks_are_concatenated_and_replays_ignored() -> None:
    rng = np.random.default_rng(5)
    p = proc(window_seconds=600)
    refs = syn.references(rng, ["a"], 3000, chunk=700)
    assert len(refs) == 5
    p.handle(syn.messages(refs + refs[:2]))  # two chunks delivered twice (at-least-once)
    p.handle(syn.messages(syn.predictions(rng, ["a"], 10, T0, rate=1.0)))
    ref = p.models[("", "p", "m", "1")].features["a"].ref
    assert ref is not None and ref.n == 3000 and ref.default_method(1000) == "wasserstein_norm"


def test_undecodable_message_goes_to_the_dlq_with_a_reason() -> None:
    p = proc()
    out = p.handle([Message(topic="orbitwatch.predictions", value=b"{not json", offset=7)])
    assert len(out) == 1 and out[0].topic == "orbitwatch.dlq"
    assert out[0].headers["orbitwatch-error"].startswith(b"drift: not an orbitwatch envelope")
    assert p.models == {}


def test_config_from_yaml_per_model(tmp_path, monkeypatch) -> None:
    path = tmp_path / "drift.yaml"
    path.write_text("default:\n  window_seconds: 120\nmodels:\n  proj/m:\n    bins: 7\n"
                    "    features:\n      amount: {method: psi, threshold: 0.3}\n")
    monkeypatch.setenv("ORBITWATCH_DRIFT_CONFIG", str(path))
    cfg = load_config()
    m = cfg.for_model("proj", "m", "v1")
    assert (m.window_seconds, m.bins, m.method_for("amount"), m.threshold_for("amount", "psi")) == (120, 7, "psi", 0.3)
    assert cfg.for_model("other", "x", "1").bins == 20
    path.write_text("default:\n  window_seconds: 100\n  slide_seconds: 30\n")
    with pytest.raises(DriftConfigError, match="multiple of slide_seconds"):
        load_config()
    path.write_text("models:\n  a/b: {bins: 1}\n")
    with pytest.raises(DriftConfigError, match="a/b: bins"):
        load_config()


def test_labels_join_their_predictions_for_classification_and_regression() -> None:
    rng = np.random.default_rng(6)
    p = proc(window_seconds=600, allowed_lateness_seconds=0)
    p.handle(syn.messages(syn.references(rng, ["x"], 2000)))
    n = 400
    prob = rng.random(n)
    preds = [r.Prediction(project="p", model="m", model_version="1", prediction_id=f"c{i}",
                          timestamp=syn.ts(T0 + i), numeric_features={"x": float(rng.normal())},
                          prediction="1" if prob[i] > 0.5 else "0", probability=float(prob[i])) for i in range(n)]
    labels = (rng.random(n) < prob).astype(int)
    labs = [r.Label(project="p", model="m", model_version="1", prediction_id=f"c{i}", label=str(labels[i]),
                    timestamp=syn.ts(T0 + 700)) for i in range(0, n, 2)]  # half of them labelled, later
    reg_model = dict(project="p", model="reg", model_version="1")
    yhat, y = rng.normal(size=n), rng.normal(size=n)
    reg = [r.Prediction(**reg_model, prediction_id=f"r{i}", timestamp=syn.ts(T0 + i),
                        numeric_features={"x": float(rng.normal())}, prediction_value=float(yhat[i]))
           for i in range(n)]
    reg_labs = [r.Label(**reg_model, prediction_id=f"r{i}", label="", label_value=float(y[i]),
                        timestamp=syn.ts(T0 + 700)) for i in range(n)]
    p.handle(syn.messages(preds + reg))
    p.handle(syn.messages(labs + reg_labs + [r.Label(project="p", model="m", model_version="1",
                                                       prediction_id="nope", label="1", timestamp=syn.ts(T0))]))
    out = decoded(p.handle(syn.messages(syn.predictions(rng, ["x"], 1, T0 + 650, 1.0, id_prefix="z")
                                        + syn.predictions(rng, ["x"], 1, T0 + 650, 1.0, id_prefix="z",
                                                          model="reg"))))
    perf = {(x.model, x.metric): x for x in out if x.feature == "__performance__" and x.is_final}
    sel = np.arange(0, n, 2)
    pred_cls = (prob[sel] > 0.5).astype(int)
    assert perf[("m", "accuracy")].value == pytest.approx(np.mean(pred_cls == labels[sel]))
    assert perf[("m", "accuracy")].sample_size == n // 2
    assert perf[("reg", "mae")].value == pytest.approx(np.mean(np.abs(yhat - y)))
    assert perf[("reg", "rmse")].value == pytest.approx(np.sqrt(np.mean((yhat - y) ** 2)))


def test_events_from_the_far_future_do_not_move_the_watermark() -> None:
    rng = np.random.default_rng(8)
    p = DriftProcessor(load_config(window_seconds=600), None)
    p.handle(syn.messages(syn.references(rng, ["x"], 500)))
    p.handle(syn.messages(syn.predictions(rng, ["x"], 1, 4_000_000_000.0, 1.0, id_prefix="bad")))  # year 2096
    p.handle(syn.messages(syn.predictions(rng, ["x"], 50, T0, 1.0)))
    assert sum(p.models[("", "p", "m", "1")].events.values()) == 50


def test_a_replayed_batch_is_not_counted_twice() -> None:
    """At-least-once: after a crash between the state save and the offset commit the runner
    re-delivers messages the restored state already counted; they are skipped."""
    rng = np.random.default_rng(9)
    p = proc(window_seconds=600, allowed_lateness_seconds=0)
    p.handle(syn.messages(syn.references(rng, ["x"], 1000)))
    batch = syn.messages(syn.predictions(rng, ["x"], 100, T0, rate=1.0))
    p.handle(batch)
    again = DriftProcessor(load_config(window_seconds=600, allowed_lateness_seconds=0), None)
    again.restore(json.loads(json.dumps(p.snapshot())))
    again.handle(batch[50:])  # the tail of the batch is re-delivered
    assert sum(again.models[("", "p", "m", "1")].events.values()) == 100
