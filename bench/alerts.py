"""Alert latency: from a drift record handed to the alert processor to the webhook receiving the
notification (Alertmanager v4, default rules, group_wait 0), with everything the real path does —
rule evaluation, `alerts` history, outbox and state writes to an embedded ClickHouse (chdb), the
delivery thread's HTTP POST. Baseline in the same run: a bare HTTP POST of the same kind of body to
the same loopback receiver. Prints one line. Usage: python bench/alerts.py [n]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orbitwatch.config import load_settings  # noqa: E402
from orbitwatch.processors.alerts import build  # noqa: E402
from orbitwatch.processors.base import Message  # noqa: E402
from orbitwatch.schemas import records as r  # noqa: E402
from orbitwatch.schemas.envelope import encode  # noqa: E402
from orbitwatch.storage import Storage, migrate  # noqa: E402
from tests.webhook_receiver import WebhookReceiver  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main(n: int = 100) -> None:
    hook = WebhookReceiver()
    tmp = tempfile.mkdtemp(prefix="ow-bench-alerts-")
    storage = Storage(f"chdb://{tmp}/ch")
    migrate(storage)
    proc = build(load_settings(alert_webhook=hook.url), storage)  # built-in rules, group_wait 0
    t0 = datetime.now(timezone.utc)

    # baseline: the same receiver, a bare POST of a similar body
    body = b'{"version":"4","alerts":[' + b'{"labels":{"alertname":"FeatureDrift"}}' * 1 + b"]}"
    base: list[float] = []
    with httpx.Client() as client:
        for _ in range(n):
            start = time.perf_counter()
            client.post(hook.url, content=body, headers={"Content-Type": "application/json"})
            base.append(time.perf_counter() - start)
    hook.requests.clear()

    lat: list[float] = []
    for i in range(n):  # each record is a new model → a new group → group_wait 0 applies
        rec = r.DriftResult(project="bench", model=f"m{i}", model_version="v1", feature="x", metric="psi",
                            value=0.4, threshold=0.2, drifted=True, window_start=t0,
                            window_end=t0 + timedelta(minutes=1), is_final=True)
        msg = Message(topic="orbitwatch.drift", value=encode(rec))
        start_wall = time.time()
        proc.handle([msg])
        got = hook.wait_for(i + 1, timeout=10)
        if len(got) < i + 1:
            raise SystemExit(f"alerts bench: notification {i} not received within 10 s")
        lat.append(got[i].at - start_wall)
    proc.close()
    storage.close()
    hook.close()
    p50, p95 = pct(lat, 0.5) * 1e3, pct(lat, 0.95) * 1e3
    b50, b95 = pct(base, 0.5) * 1e3, pct(base, 0.95) * 1e3
    print(f"alerts: drift record→webhook p50 {p50:.1f} ms p95 {p95:.1f} ms max {max(lat) * 1e3:.1f} ms "
          f"(n={n}, default rules, group_wait 0, chdb history+outbox+state writes) | baseline raw POST "
          f"p50 {b50:.2f} ms p95 {b95:.2f} ms | p95 ratio ×{p95 / b95:.0f} | target p95 ≤ 2000 ms: "
          f"{'PASS' if p95 <= 2000 else 'FAIL'} | mean {statistics.mean(lat) * 1e3:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
