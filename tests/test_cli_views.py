"""The CLI views as a user runs them (subprocesses), straight on ClickHouse with --clickhouse, and the
one-line error when no instance answers at --url."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_api import TA, TB, seed  # noqa: E402


@pytest.fixture
def dsn(tmp_path):
    from orbitwatch.storage import Storage, migrate
    dsn = f"chdb://{tmp_path / 'ch'}"
    st = Storage(dsn)
    migrate(st)
    seed(st)
    st.close()  # the CLI subprocess must own the directory
    return dsn


def test_views_straight_on_clickhouse(dsn, orbitwatch_cli):
    def run(*args):
        out = orbitwatch_cli(*args, "--clickhouse", dsn)
        assert out.returncode == 0, out.stderr
        return out.stdout

    ls = run("traces", "ls", "--project", "p1")
    assert TA in ls and TB in ls and "error" in ls
    tree = run("traces", "show", TA)
    assert "rag" in tree and "generate" in tree and "gpt-4o" in tree and "hallucination = 0.80" in tree
    assert "tokens 100/20" in tree
    page = json.loads(run("traces", "ls", "--status", "error", "--json"))
    assert [t["trace_id"] for t in page["items"]] == [TB]
    assert "run-fast" in run("experiments", "ls")
    show = run("experiments", "show", "e" * 32, "--metric", "loss", "--x", "epoch")
    assert "lr" in show and "0.01" in show and "loss" in show and "points by epoch" in show
    cmp = run("experiments", "compare", "e" * 32, "f" * 32)
    assert "0.001" in cmp and "param lr" in cmp
    drift = run("drift", "m")
    assert "drifted features: amount" in drift
    models = json.loads(run("drift", "--json"))["items"]  # the list of monitored models
    assert [(m["model"], m["drifted_features"], m["features"]) for m in models] == [("m", 1, 2)]
    alerts = run("alerts", "--history")
    assert alerts.count("FeatureDrift") == 2 and "HighHallucinationRate" in alerts


def test_unknown_ids_and_no_instance_are_one_line_errors(dsn, orbitwatch_cli):
    out = orbitwatch_cli("traces", "show", "d" * 32, "--clickhouse", dsn)
    assert out.returncode == 2 and "not found" in out.stderr and "Traceback" not in out.stderr
    out = orbitwatch_cli("alerts", "--url", "http://127.0.0.1:9")
    assert out.returncode == 2 and "no orbitwatch API answers" in out.stderr and "Traceback" not in out.stderr


def test_orbitwatch_api_command_serves_a_clickhouse(dsn, tmp_path):
    """``orbitwatch api --clickhouse DSN``: the query API alone (distributed mode's reader)."""
    import os
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "orbitwatch.cli", "api", "--clickhouse", dsn, "--port", str(port),
                             "--no-auth"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/traces?project=p1", timeout=2) as r:
                    page = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
                time.sleep(0.2)
        assert [t["trace_id"] for t in page["items"]] == [TB, TA]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
