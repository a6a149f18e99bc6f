"""A client for LLM-as-judge calls against any OpenAI-compatible chat endpoint.

Production scoring must never hang on a slow or failing provider, so every call has:

* a **timeout** (connect + read) per attempt,
* **retries** with exponential back-off on timeouts, connection errors, 429 and 5xx (never on
  other 4xx: a bad key or model name does not get better by asking again),
* a **circuit breaker**: after ``breaker_failures`` consecutive failed calls it opens and calls
  fail at once (``JudgeUnavailable``) for ``breaker_cooldown_s``; then one trial call is let
  through (half-open) and its outcome closes or re-opens it,
* a **cache** by hash of (model, prompt), so re-delivered spans and repeated offline runs do not
  pay twice.

The judge is asked for JSON ``{"score": <0..1>, "reason": "<one sentence>"}``; anything else is a
:class:`JudgeError` (counted, not trusted).
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from orbitwatch.processors.evals import telemetry


class JudgeError(RuntimeError):
    """The judge call failed (after retries) or answered something that is not a valid score."""


class JudgeUnavailable(JudgeError):
    """The circuit breaker is open: the endpoint failed repeatedly and is being left alone."""


@dataclass
class JudgeConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1 (".../chat/completions" is appended)
    model: str
    api_key: str = ""
    timeout_s: float = 10.0
    max_retries: int = 2
    backoff_s: float = 0.25
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    cache_size: int = 10_000
    temperature: float = 0.0
    json_mode: bool = True  # send response_format={"type": "json_object"}


class CircuitBreaker:
    """closed → (N consecutive failures) → open → (cooldown) → half-open → closed | open."""

    def __init__(self, failures: int, cooldown_s: float, clock=time.monotonic) -> None:
        self.threshold, self.cooldown_s, self.clock = failures, cooldown_s, clock
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_in_flight = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        with self._lock:
            st = self.state
            if st == "closed":
                return True
            if st == "half_open" and not self.trial_in_flight:
                self.trial_in_flight = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self.failures, self.opened_at, self.trial_in_flight = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.trial_in_flight or self.failures >= self.threshold:
                if self.opened_at is None or self.trial_in_flight:
                    telemetry.JUDGE_BREAKER_OPENED.inc()
                self.opened_at = self.clock()
            self.trial_in_flight = False


class JudgeClient:
    """Thread-safe; one instance per process is enough (it keeps a connection pool)."""

    def __init__(self, config: JudgeConfig) -> None:
        import httpx  # server extra; imported here so metric modules stay importable without it

        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(config.timeout_s))
        self._httpx = httpx
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s)
        self._cache: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def _key(self, system: str, prompt: str) -> str:
        return hashlib.sha256(f"{self.config.model}\0{system}\0{prompt}".encode()).hexdigest()

    def judge(self, system: str, prompt: str) -> tuple[float, str]:
        """Return (score in [0,1], reason). Raises JudgeUnavailable when the breaker is open and
        JudgeError when every attempt failed or the answer is not a valid score."""
        key = self._key(system, prompt)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                telemetry.JUDGE_CALLS.labels("cache_hit").inc()
                return hit
        if not self.breaker.allow():
            telemetry.JUDGE_CALLS.labels("breaker_open").inc()
            raise JudgeUnavailable(f"judge circuit open after {self.breaker.failures} failures; "
                                   f"retrying in ≤{self.config.breaker_cooldown_s:.0f}s")
        try:
            content = self._call_with_retries(system, prompt)
        except JudgeError:
            self.breaker.failure()
            raise
        self.breaker.success()
        try:
            result = parse_score(content)
        except JudgeError:
            telemetry.JUDGE_CALLS.labels("bad_answer").inc()
            raise
        telemetry.JUDGE_CALLS.labels("ok").inc()
        with self._cache_lock:
            self._cache[key] = result
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)
        return result

    def _call_with_retries(self, system: str, prompt: str) -> str:
        body: dict[str, Any] = {"model": self.config.model, "temperature": self.config.temperature,
                                "messages": [{"role": "system", "content": system},
                                             {"role": "user", "content": prompt}]}
        if self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        last = ""
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                time.sleep(self.config.backoff_s * (2 ** (attempt - 1)))
            try:
                resp = self._http.post(self.url, json=body)
            except self._httpx.TimeoutException:
                last = f"timed out after {self.config.timeout_s}s"
                telemetry.JUDGE_CALLS.labels("timeout").inc()
                continue
            except self._httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                telemetry.JUDGE_CALLS.labels("error").inc()
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                telemetry.JUDGE_CALLS.labels("error").inc()
                continue
            if resp.status_code >= 400:
                telemetry.JUDGE_CALLS.labels("rejected").inc()
                raise JudgeError(f"judge rejected the request: HTTP {resp.status_code} {resp.text[:200]}")
            try:
                return resp.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                raise JudgeError(f"not an OpenAI chat completion: {resp.text[:200]}") from None
        raise JudgeError(f"judge failed after {self.config.max_retries + 1} attempts: {last}")


def parse_score(content: str) -> tuple[float, str]:
    """``{"score": x, "reason": "..."}`` (possibly in a code fence or among other text) → (x, reason)."""
    text = content.strip()
    m = re.search(r"\{.*\}", text, re.DOTALL)
    if not m:
        raise JudgeError(f"judge answer has no JSON object: {text[:120]!r}")
    try:
        obj = json.loads(m.group(0))
        score = float(obj["score"])
    except (ValueError, KeyError, TypeError):
        raise JudgeError(f"judge answer lacks a numeric 'score': {text[:120]!r}") from None
    if not 0.0 <= score <= 1.0:
        raise JudgeError(f"judge score {score} outside [0, 1]")
    return score, str(obj.get("reason", ""))[:1000]
