"""The SDK against a real OTLP/gRPC receiver: the issue's two examples (unchanged but for the
import line, run as scripts), API-key header, retries, a dead endpoint, request size limits."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import grpc
import pytest

import orbitwatch
from orbitwatch import Experiment, track
from orbitwatch import transport as transport_mod
from orbitwatch.schemas import attributes as A

from .conftest import free_port
from .otlp_receiver import OtlpReceiver

EXPERIMENT_EXAMPLE = '''
from orbitwatch import Experiment
experiment = Experiment(api_key="YOUR_API_KEY", project_name="my-pytorch-project", workspace="my-workspace")
experiment.log_parameters({"learning_rate": 0.001, "batch_size": 32, "epochs": 10})
for epoch in range(10):
    experiment.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
experiment.log_model("my_pytorch_model", model)   # a torch.nn.Linear(10, 1) in the test, if torch is installed
experiment.end()
'''

MODEL_PRELUDE = '''
try:
    import torch
    model = torch.nn.Linear(10, 1)
except ImportError:
    class Linear:  # a picklable stand-in with a scikit-learn-like surface
        def __init__(self): self.coef_ = [0.5] * 10
        def fit(self, X, y): return self
        def get_params(self): return {}
    model = Linear()
'''

TRACK_EXAMPLE = '''
from orbitwatch import track
@track
def llm_chain(user_question):
    context = get_context(user_question)
    return call_llm(user_question, context)
@track
def get_context(user_question):
    return ["The dog chased the cat.", "The cat was called Luky."]
@track
def call_llm(user_question, context):
    return "The dog chased the cat Luky."
print(llm_chain("What did the dog do?"))
'''


@pytest.fixture
def receiver():
    with OtlpReceiver() as rx:
        yield rx


def run_script(code: str, rx: OtlpReceiver, tmp_path, **env: str) -> subprocess.CompletedProcess:
    script = tmp_path / "example.py"
    script.write_text(code)
    full_env = {**os.environ, "ORBITWATCH_ENDPOINT": rx.endpoint,
                "ORBITWATCH_ARTIFACT_URI": (tmp_path / "artifacts").as_uri(), **env}
    full_env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=full_env, timeout=60,
                         cwd=tmp_path)
    return out


def test_experiment_example_runs_unchanged_against_grpc_receiver(receiver, tmp_path):
    out = run_script(MODEL_PRELUDE + EXPERIMENT_EXAMPLE, receiver, tmp_path)
    assert out.returncode == 0, out.stderr
    spans = receiver.wait_for(lambda ss: any(s.attributes.get(A.EXPERIMENT_STATUS) == "finished" for s in ss))
    status = [s for s in spans if s.attributes.get(A.KIND) == "experiment"]
    assert [s.attributes[A.EXPERIMENT_STATUS] for s in status] == ["running", "finished"]
    exp_id = status[0].attributes[A.EXPERIMENT_ID]
    assert all(s.metadata.get("authorization") == "Bearer YOUR_API_KEY" for s in spans)
    assert status[0].resource["service.name"] == "my-pytorch-project"
    assert status[0].resource[A.PROJECT] == "my-pytorch-project"
    assert status[0].attributes[A.WORKSPACE] == "my-workspace"
    batch_events = [e for s in spans if s.attributes.get(A.KIND) == "experiment.batch" for e in s.events]
    assert {s.trace_id for s in spans} == {status[0].trace_id}
    params = {e.attributes["name"]: e.attributes["value"] for e in batch_events if e.name == "param"}
    assert params == {"learning_rate": "0.001", "batch_size": "32", "epochs": "10"}
    metrics = [e.attributes for e in batch_events if e.name == "metric"]
    assert [(m["name"], m["step"], m["value"]) for m in metrics] == [("loss", i, 1.0 / (i + 1)) for i in range(10)]
    (asset,) = [e.attributes for e in batch_events if e.name == "asset"]
    assert asset["kind"] == "model" and asset["name"] == "my_pytorch_model" and asset["size"] > 0
    assert exp_id in asset["uri"] and len(asset["sha256"]) == 64


def test_track_example_runs_unchanged_and_is_flushed_at_exit(receiver, tmp_path):
    out = run_script(TRACK_EXAMPLE, receiver, tmp_path, ORBITWATCH_PROJECT="chatbot")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "The dog chased the cat Luky."
    spans = {s.name: s for s in receiver.wait_for(lambda ss: len(ss) >= 3)}
    assert set(spans) == {"llm_chain", "get_context", "call_llm"}
    root = spans["llm_chain"]
    assert root.parent_span_id == ""
    for child in ("get_context", "call_llm"):
        assert spans[child].trace_id == root.trace_id and spans[child].parent_span_id == root.span_id
    assert spans["call_llm"].attributes[A.INPUT] == (
        '{"user_question":"What did the dog do?","context":["The dog chased the cat.","The cat was called Luky."]}')
    assert spans["call_llm"].attributes[A.OUTPUT] == '"The dog chased the cat Luky."'
    assert root.resource["service.name"] == "chatbot" and root.attributes[A.PROJECT] == "chatbot"
    assert "authorization" not in root.metadata  # no key configured, none sent


def test_unfinished_experiment_is_marked_failed_when_the_script_crashes(receiver, tmp_path):
    code = textwrap.dedent('''
        from orbitwatch import Experiment
        exp = Experiment(project_name="crashy")
        exp.log_metric("loss", 1.5)
        raise SystemError("training blew up")
    ''')
    out = run_script(code, receiver, tmp_path)
    assert out.returncode != 0 and "training blew up" in out.stderr
    spans = receiver.wait_for(lambda ss: any(s.attributes.get(A.EXPERIMENT_STATUS) == "failed" for s in ss))
    assert [e.attributes["value"] for s in spans for e in s.events if e.name == "metric"] == [1.5]


def test_retries_on_unavailable_then_delivers(receiver, unique):
    orbitwatch.configure(endpoint=receiver.endpoint, project=f"retry-{unique}")
    receiver.fail_next(2, grpc.StatusCode.UNAVAILABLE)

    @track
    def work():
        return 42

    work()
    assert orbitwatch.flush(20)
    spans = receiver.wait_for(lambda ss: any(s.name == "work" for s in ss))
    assert receiver.failed_calls == 2 and [s.name for s in spans] == ["work"]


def test_dead_endpoint_never_blocks_or_breaks_the_program(monkeypatch, unique):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    orbitwatch.configure(endpoint=f"http://127.0.0.1:{free_port()}", project=f"dead-{unique}")
    before = transport_mod.stats()["export_failed_spans"]

    @track
    def work(i):
        return i

    t0 = time.perf_counter()
    for i in range(200):
        assert work(i) == i
    exp = Experiment()
    for i in range(1000):
        exp.log_metric("m", i)
    assert time.perf_counter() - t0 < 2.0
    exp.end()  # bounded by ORBITWATCH_EXIT_TIMEOUT even though nothing can be delivered
    orbitwatch.flush(10)
    assert transport_mod.stats()["export_failed_spans"] > before


def test_large_bulk_is_split_under_the_receivers_message_limit(receiver, unique):
    orbitwatch.configure(endpoint=receiver.endpoint, project=f"bulk-{unique}")
    exp = Experiment()
    n = 60_000
    for i in range(n):
        exp.log_metric("validation/per_class_accuracy/class_%04d" % (i % 1000), i * 0.5, step=i)
    exp.end()
    spans = receiver.wait_for(lambda ss: sum(len(s.events) for s in ss if s.attributes.get(A.KIND) ==
                                             "experiment.batch") >= n, timeout=30)
    seqs = sorted(e.attributes["seq"] for s in spans for e in s.events if e.name == "metric")
    assert seqs == list(range(n))
    assert max(req.ByteSize() for req, _ in receiver.requests) < 4 * 1024 * 1024


def test_disk_spool_keeps_what_a_dead_endpoint_refused_and_replays_it(monkeypatch, tmp_path, unique):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("ORBITWATCH_SPOOL_DIR", str(tmp_path / "spool"))
    port = free_port()
    orbitwatch.configure(endpoint=f"http://127.0.0.1:{port}", api_key="k-spool", project=f"spool-{unique}")
    before = transport_mod.stats()

    @track
    def offline_call(i):
        return i

    for i in range(5):
        offline_call(i)
    exp = Experiment()
    exp.log_metric("loss", 0.25, step=3)
    exp.end()
    after = transport_mod.stats()
    assert after["spooled_spans"] - before.get("spooled_spans", 0) >= 7  # 5 calls + status + batch spans
    assert after["export_failed_spans"] == before["export_failed_spans"]
    files = list((tmp_path / "spool").rglob("*.otlp"))
    assert files and "k-spool" not in str(files[0])  # the key is hashed, never written

    # The endpoint comes back: the spool empties into it, oldest first, nothing twice.
    with OtlpReceiver(port=port) as rx:
        spans = rx.wait_for(lambda ss: sum(s.name == "offline_call" for s in ss) == 5
                            and any(s.attributes.get(A.EXPERIMENT_STATUS) == "finished" for s in ss)
                            and any(e.name == "metric" for s in ss for e in s.events), timeout=20)
        deadline = time.monotonic() + 5
        while list((tmp_path / "spool").rglob("*.otlp*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list((tmp_path / "spool").rglob("*.otlp*"))
        assert sum(s.name == "offline_call" for s in rx.spans()) == 5  # nothing replayed twice
        assert [e.attributes["value"] for s in spans for e in s.events if e.name == "metric"] == [0.25]
        assert all(s.metadata.get("authorization") == "Bearer k-spool" for s in spans)


def test_partial_success_rejections_are_counted_with_the_reason(receiver, unique, caplog):
    orbitwatch.configure(endpoint=receiver.endpoint, project=f"partial-{unique}")
    before = transport_mod.stats().get("rejected_spans", 0)
    receiver.reject_next(1, "span too large for tenant quota")

    @track
    def work():
        return 1

    work()
    assert orbitwatch.flush(10)
    assert transport_mod.stats()["rejected_spans"] - before == 1
    assert "span too large for tenant quota" in caplog.text
