"""A small, real OpenAI-compatible HTTP server for tests of the LLM-judge path.

``POST /v1/chat/completions`` answers a chat completion whose message content is JSON
``{"score": s, "reason": "..."}``. The score is computed from the prompt so tests can check that
the prompt reached the server: it is ``score_if_unsupported`` when the prompt contains the
``unsupported_marker`` text, else ``score``. Knobs (attributes, changeable while running):

* ``delay_s`` — sleep before answering (timeout tests),
* ``fail_next`` — answer the next N requests with HTTP ``fail_status`` (retry / breaker tests),
* ``content`` — answer this raw content instead (bad-answer tests).

``requests`` counts requests received; ``last_body`` holds the last JSON body.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OpenAIStub:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.delay_s = 0.0
        self.fail_next = 0
        self.fail_status = 503
        self.score = 0.1
        self.score_if_unsupported = 0.9
        self.unsupported_marker = "INVENTED"
        self.content: str | None = None
        self.requests = 0
        self.last_body: dict[str, Any] | None = None
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with stub._lock:
                    stub.requests += 1
                    failing = stub.fail_next > 0
                    if failing:
                        stub.fail_next -= 1
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                try:
                    body = json.loads(raw)
                    stub.last_body = body
                    prompt = "\n".join(m["content"] for m in body["messages"])
                except (ValueError, KeyError, TypeError):
                    return self._send(400, {"error": {"message": "bad request body"}})
                if stub.delay_s:
                    time.sleep(stub.delay_s)
                if failing:
                    return self._send(stub.fail_status, {"error": {"message": "injected failure"}})
                if stub.content is not None:
                    content = stub.content
                else:
                    bad = stub.unsupported_marker in prompt
                    content = json.dumps({"score": stub.score_if_unsupported if bad else stub.score,
                                          "reason": "contains unsupported claims" if bad else "grounded"})
                self._send(200, {"id": "chatcmpl-stub", "object": "chat.completion", "model": body.get("model"),
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}]})

            def _send(self, status: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "OpenAIStub":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
