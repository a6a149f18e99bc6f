"""A real HTTP receiver on loopback for alert tests and the alert bench.

It records every request (method, path, headers, raw body, parsed JSON, arrival time) and answers
with a scripted sequence (e.g. ``[500, 500, 200]``), then ``default_status``. A script entry is a
status, or ``(status, delay_seconds)``, or ``(status, delay_seconds, {header: value})``.
``accepted()`` are the 2xx'd requests; ``unique()`` dedups them by notification id, which is what
an idempotent receiver would act on.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Recorded:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes, status: int) -> None:
        self.method, self.path, self.headers, self.body, self.status = method, path, headers, body, status
        self.at = time.time()
        try:
            self.json: Any = json.loads(body)
        except ValueError:
            self.json = None

    @property
    def notification_id(self) -> str:
        return self.headers.get("x-orbitwatch-notification-id", "")


class WebhookReceiver:
    def __init__(self, script: list[Any] | None = None, default_status: int = 200, delay: float = 0.0,
                 port: int = 0) -> None:
        self.script = list(script or [])
        self.default_status = default_status
        self.delay = delay
        self.requests: list[Recorded] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                with receiver._cond:
                    step = receiver.script.pop(0) if receiver.script else receiver.default_status
                status, delay, extra = (step, receiver.delay, {}) if isinstance(step, int) else (
                    step[0], step[1], step[2] if len(step) > 2 else {})
                if delay:
                    time.sleep(delay)
                with receiver._cond:
                    receiver.requests.append(Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body, status))
                    receiver._cond.notify_all()
                payload = b'{"ok":true}' if status < 300 else b'{"error":"scripted failure"}'
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def accepted(self) -> list[Recorded]:
        with self._cond:
            return [r for r in self.requests if 200 <= r.status < 300]

    def unique(self) -> list[Recorded]:
        seen: set[str] = set()
        out = []
        for r in self.accepted():
            if r.notification_id not in seen:
                seen.add(r.notification_id)
                out.append(r)
        return out

    def wait_for(self, n: int, timeout: float = 10.0, accepted: bool = True) -> list[Recorded]:
        """Wait until ``n`` (accepted) requests arrived; returns them (fewer on timeout)."""
        deadline = time.time() + timeout
        with self._cond:
            while True:
                got = [r for r in self.requests if not accepted or 200 <= r.status < 300]
                if len(got) >= n or time.time() >= deadline:
                    return got
                self._cond.wait(min(0.05, max(0.0, deadline - time.time())))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
