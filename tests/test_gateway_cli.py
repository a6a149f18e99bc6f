"""``orbitwatch gateway`` as a user runs it: starts, accepts spans, shuts down cleanly on SIGTERM."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from orbitwatch.ingest.auth import Auth
from orbitwatch.errors import UserError
from tests.conftest import free_port
from tests.test_gateway import make_spans
from tests.test_gateway_support import consume

pytestmark = pytest.mark.kafka


def test_cli_gateway_serves_and_stops_on_sigterm(kafka, unique, tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - key: cli-key-123456\n    tenant: cli-tenant\n")
    grpc_port, http_port = free_port(), free_port()
    env = dict(os.environ, ORBITWATCH_TOPIC_PREFIX=f"t{unique}.")
    proc = subprocess.Popen([sys.executable, "-m", "orbitwatch.cli", "gateway", "--kafka", kafka.bootstrap,
                             "--host", "127.0.0.1", "--grpc-port", str(grpc_port), "--http-port", str(http_port),
                             "--keys", str(keys)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "gateway did not become ready"
            time.sleep(0.2)
        spans = make_spans(f"127.0.0.1:{grpc_port}", {"authorization": "Bearer cli-key-123456"}, 1, 2)
        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/traces", data=b"x", method="POST",
                                     headers={"content-type": "application/x-protobuf", "x-api-key": "wrong-key-1"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 401
        got = asyncio.run(consume(kafka.bootstrap, f"t{unique}.otlp.traces", 1))
        assert got[0].key == format(spans[0].context.trace_id, "032x").encode()
        assert dict(got[0].headers)["orbitwatch-tenant"] == b"cli-tenant"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "OTLP/gRPC 127.0.0.1:" in out
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(rec["msg"] == "gateway stopped" for rec in logs)
    refused = [rec for rec in logs if rec["msg"] == "export refused"]
    assert refused and refused[0]["code"] == "UNAUTHENTICATED" and refused[0]["reason"] == "unknown API key"
    assert "Traceback" not in err


def test_cli_gateway_bad_keys_file_is_one_line(orbitwatch_cli, tmp_path):
    bad = tmp_path / "keys.yaml"
    bad.write_text("keys:\n  - key: short\n    tenant: x\n")
    r = orbitwatch_cli("gateway", "--keys", str(bad), "--kafka", "127.0.0.1:1")
    assert r.returncode == 2
    assert "keys[0].key must be a string of at least 8 characters" in r.stderr
    assert "Traceback" not in r.stderr


def test_auth_sources():
    a = Auth.from_env({"ORBITWATCH_API_KEYS": "k-aaaaaaaa=acme/chat, k-bbbbbbbb=beta"})
    assert a.authenticate({"x-api-key": "k-aaaaaaaa"}).project == "chat"
    assert a.authenticate({"authorization": "Bearer k-bbbbbbbb"}).tenant == "beta"
    a = Auth.from_env({"ORBITWATCH_API_KEYS": '{"keys": [{"key": "k-cccccccc", "tenant": "c"}]}'})
    assert a.authenticate({"authorization": "bearer k-cccccccc"}).tenant == "c"
    assert Auth.from_env({}) is None
    assert Auth.disabled().authenticate({}).tenant == "default"
    with pytest.raises(UserError, match="duplicate key"):
        Auth.from_mapping({"keys": [{"key": "k-dddddddd", "tenant": "d"}] * 2})
    with pytest.raises(UserError, match="no API keys"):
        Auth.from_mapping({"keys": []})
