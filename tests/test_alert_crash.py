"""Exactly-once to the receiver across a crash between fire and delivery.

1. A real child process fires an alert while the receiver is down (the notification sits in the
   outbox, retrying), and is SIGKILLed. A new process on the same ClickHouse directory, fed the
   same (uncommitted, so re-delivered) input, delivers it once the receiver is up: exactly one.
2. The narrower window — outbox written, alert state not yet saved — replays to the same
   notification id, which the outbox drops.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orbitwatch.storage import Storage, StorageError

from tests.conftest import free_port
from tests.test_alerts import RETRY_RULES, drift, make
from tests.webhook_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[4])
from orbitwatch.storage import Storage, migrate
from orbitwatch.processors.alerts import effective_config, parse_rules
from orbitwatch.processors.alerts.operator import AlertProcessor
from tests.test_alerts import drift
dsn, rules, phase = sys.argv[1], sys.argv[2], sys.argv[3]
st = Storage(dsn)
migrate(st)
doc = parse_rules(rules)
proc = AlertProcessor(effective_config("", doc), st, base_doc=doc)
proc.handle([drift(0, True), drift(1, True)])
print("HANDLED", flush=True)
if phase == "fire":
    time.sleep(120)  # SIGKILLed here, while the receiver is down
else:
    print("IDLE", proc.outbox.wait_idle(30), flush=True)
    proc.close()
    st.close()
"""


def child(dsn: str, rules: str, phase: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, dsn, rules, phase, str(ROOT)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_sigkill_between_fire_and_delivery_delivers_exactly_once(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    rules = RETRY_RULES.replace("URL", url).replace("max_attempts: 5", "max_attempts: 10000")
    dsn = f"chdb://{tmp_path / 'ch'}"
    first = child(dsn, rules, "fire")
    try:
        line = first.stdout.readline()
        assert line.strip() == "HANDLED", first.stderr.read() if first.poll() is not None else line
        time.sleep(0.5)  # a few refused delivery attempts
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    with WebhookReceiver(port=port) as hook:
        second = child(dsn, rules, "restart")
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err[-3000:]
        assert "IDLE True" in out
        time.sleep(0.2)
        assert len(hook.requests) == 1, [r.json for r in hook.requests]
        assert hook.requests[0].json["status"] == "firing"
        assert hook.requests[0].json["alerts"][0]["labels"]["feature"] == "age"
    st = Storage(dsn)
    try:
        rows = st.query_dicts("SELECT status, attempts FROM alert_outbox FINAL")
        assert len(rows) == 1 and rows[0]["status"] == "delivered" and rows[0]["attempts"] >= 2
        assert st.scalar("SELECT count() FROM alerts FINAL") == 1
    finally:
        st.close()


class FailStateWrites:
    """ClickHouse that dies right after the outbox insert (the crash window being tested)."""

    def __init__(self, storage) -> None:
        self._storage = storage
        self.broken = True

    def insert_rows(self, table, *args, **kwargs):
        if self.broken and table == "alert_state":
            raise StorageError("connection reset (injected)")
        return self._storage.insert_rows(table, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._storage, name)


def test_crash_after_outbox_before_state_replays_to_same_id(storage):
    from orbitwatch.processors.base import RetryableError
    with WebhookReceiver(script=[503] * 3) as hook:  # not delivered before the "crash"
        rules = RETRY_RULES.replace("URL", hook.url).replace("max_attempts: 5", "max_attempts: 50")
        flaky = FailStateWrites(storage)
        proc = make(flaky, rules)
        with pytest.raises(RetryableError):
            proc.handle([drift(0, True)])
        proc.close()  # the process is gone: its memory with it (delivery may or may not have happened)
        assert storage.scalar("SELECT count() FROM alert_outbox FINAL") == 1
        assert storage.scalar("SELECT count() FROM alert_state FINAL") == 0
        again = make(storage, rules)  # restart: re-queues the pending row
        again.handle([drift(0, True)])  # the runner re-delivers the uncommitted batch
        assert again.outbox.wait_idle(10)
        time.sleep(0.2)
        assert len(hook.accepted()) == 1 and len({r.notification_id for r in hook.requests}) == 1
        assert storage.scalar("SELECT count() FROM alert_outbox FINAL") == 1
        again.close()
