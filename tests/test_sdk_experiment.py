"""Experiment → OTLP span mapping (the sink's contract), asserted with an in-memory exporter."""
from __future__ import annotations

import hashlib
import json
import pickle
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import orbitwatch
from orbitwatch import Experiment
from orbitwatch import transport as transport_mod
from orbitwatch.schemas import attributes as A


@pytest.fixture
def mem(unique, tmp_path, monkeypatch):
    monkeypatch.setenv("ORBITWATCH_ARTIFACT_URI", (tmp_path / "artifacts").as_uri())
    exporter = InMemorySpanExporter()
    orbitwatch.configure(exporter=exporter, project=f"proj-{unique}", flush_interval=0.2)
    yield exporter


def kinds(exporter, kind):
    return [s for s in exporter.get_finished_spans() if s.attributes.get(A.KIND) == kind]


def events(exporter, experiment_id, name=None):
    out = []
    for s in kinds(exporter, "experiment.batch"):
        if s.attributes[A.EXPERIMENT_ID] == experiment_id:
            out += [e for e in s.events if name is None or e.name == name]
    return out


class Estimator:
    """Stands in for a scikit-learn estimator: picklable, with fit/get_params."""

    def __init__(self, alpha=0.5):
        self.alpha = alpha

    def get_params(self):
        return {"alpha": self.alpha}

    def fit(self, X, y):
        return self


def test_issue_example_maps_to_experiment_and_batch_spans(mem):
    experiment = Experiment(api_key="YOUR_API_KEY", project_name="my-pytorch-project", workspace="my-workspace")
    experiment.log_parameters({"learning_rate": 0.001, "batch_size": 32, "epochs": 10})
    for epoch in range(10):
        experiment.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    experiment.log_model("my_pytorch_model", Estimator())
    experiment.end()

    status = [s for s in kinds(mem, "experiment") if s.attributes[A.EXPERIMENT_ID] == experiment.id]
    assert [s.attributes[A.EXPERIMENT_STATUS] for s in status] == ["running", "finished"]
    root, final = status
    assert root.parent is None and final.parent.span_id == root.context.span_id
    a = final.attributes
    assert a[A.PROJECT] == "my-pytorch-project" and a[A.WORKSPACE] == "my-workspace"
    assert int(a[A.EXPERIMENT_ENDED_AT]) >= int(a[A.EXPERIMENT_STARTED_AT]) > 0
    system = json.loads(a[A.EXPERIMENT_SYSTEM])
    assert {"python_version", "host", "command", "packages"} <= set(system)
    assert all(isinstance(v, str) for v in system.values()) and "pydantic==" in system["packages"]
    assert "git_commit" in system and system["git_dirty"] in ("true", "false")  # tests run in the repo

    batches = [s for s in kinds(mem, "experiment.batch") if s.attributes[A.EXPERIMENT_ID] == experiment.id]
    assert batches and all(b.context.trace_id == root.context.trace_id for b in batches)
    assert all(b.parent.span_id == root.context.span_id for b in batches)
    params = {e.attributes["name"]: e.attributes["value"] for e in events(mem, experiment.id, "param")}
    assert params == {"learning_rate": "0.001", "batch_size": "32", "epochs": "10"}
    metrics = events(mem, experiment.id, "metric")
    assert [(e.attributes["step"], e.attributes["value"]) for e in metrics] == [(i, 1.0 / (i + 1)) for i in range(10)]
    assert [e.attributes["seq"] for e in metrics] == list(range(10))
    assert all(root.start_time <= e.timestamp <= final.end_time for e in metrics)
    (model,) = events(mem, experiment.id, "asset")
    m = model.attributes
    assert m["kind"] == "model" and m["name"] == "my_pytorch_model"
    path = Path(urlsplit(m["uri"]).path)
    assert path.exists() and path.stat().st_size == m["size"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == m["sha256"]
    assert pickle.loads(path.read_bytes()).alpha == 0.5
    assert experiment.id in path.parts


def test_points_are_flushed_while_running_not_only_at_end(mem):
    exp = Experiment(project_name="live")
    exp.log_metric("acc", 0.5)
    deadline = time.monotonic() + 3
    while not events(mem, exp.id, "metric") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events(mem, exp.id, "metric"), "point not exported within 3 s while the experiment runs"
    exp.end()


def test_every_point_kept_and_large_runs_split_into_bounded_spans(mem):
    exp = Experiment()
    n = 12_345
    for i in range(n):
        exp.log_metric("loss", i, step=i // 10)  # ten points per step: none may be merged
    exp.end()
    batches = [s for s in kinds(mem, "experiment.batch") if s.attributes[A.EXPERIMENT_ID] == exp.id]
    assert len(batches) >= 3 and all(len(b.events) <= 5000 for b in batches)
    metrics = events(mem, exp.id, "metric")
    assert sorted(e.attributes["seq"] for e in metrics) == list(range(n))
    assert sorted(e.attributes["value"] for e in metrics) == [float(i) for i in range(n)]


def test_comet_surface_steps_epochs_prefixes_contexts_tags_others(mem):
    exp = orbitwatch.start(project_name="p", experiment_key="a" * 32, log_code=False, auto_metric_logging=False)
    assert exp.get_key() == "a" * 32
    exp.set_step(7)
    exp.set_epoch(2)
    exp.log_metric("m", 1)
    exp.log_metrics({"loss": 0.5, "sub": {"a": 1}}, prefix="val", step=3)
    with exp.train():
        exp.log_metric("acc", 0.9)
    exp.log_parameters({"opt": {"name": "adam", "betas": [0.9, 0.99]}}, prefix="cfg")
    exp.log_other("notes", {"k": 1})
    exp.log_metric("status", "diverged")  # not a number: kept as an 'other'
    exp.set_name("renamed")
    exp.add_tags(["a", "b"])
    exp.add_tag("a")
    exp.end()
    got = {(e.attributes["name"], e.attributes["step"], e.attributes["epoch"]) for e in events(mem, exp.id, "metric")}
    assert got == {("m", 7, 2), ("val_loss", 3, 2), ("val_sub.a", 3, 2), ("train_acc", 7, 2)}
    params = {e.attributes["name"]: e.attributes["value"] for e in events(mem, exp.id, "param")}
    assert params == {"cfg_opt.name": "adam", "cfg_opt.betas": "[0.9,0.99]"}
    others = {e.attributes["name"]: e.attributes["value"] for e in events(mem, exp.id, "other")}
    assert others == {"notes": '{"k":1}', "status": "diverged"}
    assert sorted(e.attributes["name"] for e in events(mem, exp.id, "tag")) == ["a", "b"]
    status = [s.attributes for s in kinds(mem, "experiment") if s.attributes[A.EXPERIMENT_ID] == exp.id]
    assert [s[A.EXPERIMENT_NAME] for s in status][-1] == "renamed"
    assert json.loads(status[-1][A.EXPERIMENT_TAGS]) == ["a", "b"]
    with pytest.raises(TypeError, match="not_a_comet_option"):
        Experiment(not_a_comet_option=1)
    with pytest.raises(ValueError, match="experiment_key"):
        Experiment(experiment_key="short")


def test_context_manager_marks_failed_on_exception(mem):
    with pytest.raises(RuntimeError):
        with Experiment() as exp:
            exp.log_metric("x", 1)
            raise RuntimeError("diverged")
    status = [s.attributes for s in kinds(mem, "experiment") if s.attributes[A.EXPERIMENT_ID] == exp.id]
    assert status[-1][A.EXPERIMENT_STATUS] == "failed" and A.EXPERIMENT_ENDED_AT in status[-1]
    assert {e.attributes["name"]: e.attributes["value"] for e in events(mem, exp.id, "other")} == {
        "error": "RuntimeError: diverged"}
    with Experiment() as ok:
        pass
    assert [s.attributes[A.EXPERIMENT_STATUS] for s in kinds(mem, "experiment")
            if s.attributes[A.EXPERIMENT_ID] == ok.id][-1] == "finished"


def test_log_model_from_file_folder_and_log_asset(mem, tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00" * 1000)
    folder = tmp_path / "saved_model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"pb")
    (folder / "variables" / "v.data").write_bytes(b"data!")
    exp = Experiment()
    exp.log_model("from-file", str(weights))
    info = exp.log_model("from-folder", folder)
    exp.log_asset(b"hello", file_name="notes/hello.txt")
    exp.log_asset(weights)
    exp.end()
    assets = {(e.attributes["kind"], e.attributes["name"]): e.attributes for e in events(mem, exp.id, "asset")}
    assert set(assets) == {("model", "from-file"), ("model", "from-folder"), ("asset", "notes/hello.txt"),
                           ("asset", "weights.bin")}
    f = assets[("model", "from-file")]
    assert f["size"] == 1000 and f["sha256"] == hashlib.sha256(b"\x00" * 1000).hexdigest()
    d = assets[("model", "from-folder")]
    assert d["size"] == 7 and info["files"] == 2
    assert Path(urlsplit(d["uri"]).path, "saved_model", "variables", "v.data").read_bytes() == b"data!"
    h = assets[("asset", "notes/hello.txt")]
    assert Path(urlsplit(h["uri"]).path).read_bytes() == b"hello"
    with pytest.raises(ValueError, match="'..'"):
        Experiment().log_asset(b"x", file_name="../escape")
    with pytest.raises(TypeError, match="not picklable"):
        Experiment().log_model("lambda", lambda: 1)


def test_log_model_torch_module(mem):
    torch = pytest.importorskip("torch")
    exp = Experiment()
    exp.log_model("linear", torch.nn.Linear(10, 1))
    exp.end()
    (ev,) = events(mem, exp.id, "asset")
    state = torch.load(urlsplit(ev.attributes["uri"]).path)
    assert set(state) == {"weight", "bias"}


def test_full_buffer_drops_new_points_with_a_counter_and_never_blocks(mem, monkeypatch, caplog):
    monkeypatch.setenv("ORBITWATCH_MAX_BUFFERED_POINTS", "100")
    exp = Experiment()
    before = transport_mod.stats()["dropped_points"]
    transport_mod.get_transport().unregister(exp)  # no flusher: the buffer stays full
    for i in range(150):
        exp.log_metric("x", i)
    assert transport_mod.stats()["dropped_points"] - before == 50
    assert "buffer full" in caplog.text
    exp.end()
    assert len(events(mem, exp.id, "metric")) == 100
    exp.log_metric("after-end", 1)
    assert "already ended" in caplog.text


def test_disabled_experiment_sends_nothing(mem):
    exp = Experiment(disabled=True)
    exp.log_metric("x", 1)
    exp.log_parameter("p", 1)
    exp.end()
    orbitwatch.flush(5)
    assert not [s for s in mem.get_finished_spans() if s.attributes.get(A.EXPERIMENT_ID) == exp.id]


def test_forked_child_does_not_end_or_resend_the_parents_experiment(mem):
    """After fork the child holds no running experiments (its exit would otherwise mark the
    parent's run finished) and no flusher sources (it would re-send the parent's buffer)."""
    import os

    from orbitwatch import experiment as experiment_mod
    exp = Experiment()
    exp.log_metric("before-fork", 1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        t = transport_mod.get_transport()
        report = f"{len(experiment_mod._running)},{len(list(t._sources))},{t._thread is None}"
        os.write(write, report.encode())
        os._exit(0)
    os.close(write)
    report = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    assert report == "0,0,True"
    assert exp in experiment_mod._running
    exp.end()
    assert [e.attributes["name"] for e in events(mem, exp.id, "metric")] == ["before-fork"]


def test_other_comet_log_methods_become_assets_and_unknown_ones_never_break(mem, caplog):
    exp = Experiment()
    exp.log_text("hello", step=2)
    exp.log_curve("roc", [0, 1], [0, 1])
    exp.log_confusion_matrix(y_true=["a", "b", "a"], y_predicted=["a", "a", "a"], title="cm", step=1)
    exp.log_table("table.csv", [[1, 2], [3, 4]], headers=["x", "y"])
    exp.log_image(b"\x89PNG...", name="img.png")
    exp.log_histogram_3d([1, 2, 3], name="weights")  # not implemented: ignored with one warning
    exp.end()
    names = {e.attributes["name"]: e.attributes for e in events(mem, exp.id, "asset")}
    assert {"curves/roc.json", "confusion-matrix/cm-1.json", "table.csv", "images/img.png"} <= set(names)
    cm = json.loads(Path(urlsplit(names["confusion-matrix/cm-1.json"]["uri"]).path).read_text())
    assert cm["labels"] == ["a", "b"] and cm["matrix"] == [[2, 0], [1, 0]]
    assert Path(urlsplit(names["table.csv"]["uri"]).path).read_text().splitlines() == ["x,y", "1,2", "3,4"]
    assert any(n.startswith("text/2-") for n in names)
    assert "log_histogram_3d() is not supported" in caplog.text
    with pytest.raises(AttributeError):
        getattr(exp, "no_such_thing")  # noqa: B009
