"""``Experiment.log_metric`` calls/s from one thread, and the end-to-end delivery rate behind it.

    python bench/sdk_log_metric.py [--points 500000]

The experiment exports over OTLP/gRPC to a real receiver in a separate process
(tests/otlp_receiver.py) while the loop runs, so the flusher and exporter threads compete
for the GIL as they would in training. Figures:

* ``calls/s``: ``log_metric(name, value, step=i)`` in a tight loop (target ≥ 200,000/s);
* ``baseline``: the same loop calling a method that only appends the same tuple to a list
  (the floor for any Python API that keeps every point), and the ratio to it;
* ``e2e``: points/s from the first call until ``end()`` returned with every batch span
  acknowledged by the receiver (bounded by OTLP protobuf encoding in the exporter thread);
* ``dropped``: points dropped because the bounded buffer was full (should be 0).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_receiver() -> tuple[subprocess.Popen, str]:
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from tests.otlp_receiver import OtlpReceiver\n"
            "rx = OtlpReceiver(max_message_bytes=4 << 20).start()\n"
            "print(rx.endpoint, flush=True)\n"
            "sys.stdin.read()\n"
            "print(sum(len(e) for e in [s.events for s in rx.spans()]), flush=True)\n") % str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    endpoint = proc.stdout.readline().strip()  # type: ignore[union-attr]
    return proc, endpoint


class Baseline:
    def __init__(self) -> None:
        self.points: list[tuple] = []

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        self.points.append(("metric", time.time_ns(), name, value, step, 0, 0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=500_000)
    args = ap.parse_args()
    n = args.points
    os.environ.setdefault("ORBITWATCH_MAX_BUFFERED_POINTS", str(max(n, 500_000)))
    proc, endpoint = start_receiver()
    try:
        import orbitwatch
        from orbitwatch import Experiment

        orbitwatch.configure(endpoint=endpoint, project="bench-log-metric")
        base = Baseline()
        log = base.log_metric
        t0 = time.perf_counter()
        for i in range(n):
            log("loss", 0.5, step=i)
        baseline_rate = n / (time.perf_counter() - t0)
        del base

        exp = Experiment(project_name="bench-log-metric")
        log = exp.log_metric
        t0 = time.perf_counter()
        for i in range(n):
            log("loss", 0.5, step=i)
        t1 = time.perf_counter()
        exp.end()
        t2 = time.perf_counter()
        rate = n / (t1 - t0)
        stats = orbitwatch.transport.stats()
        proc.stdin.close()  # type: ignore[union-attr]
        received = int(proc.stdout.readline().strip() or 0)  # type: ignore[union-attr]
        print(f"sdk_log_metric: calls/s={rate:,.0f} (target>=200,000) baseline_list_append/s={baseline_rate:,.0f} "
              f"ratio={rate / baseline_rate:.2f} e2e_delivered_points/s={n / (t2 - t0):,.0f} "
              f"end_flush_s={t2 - t1:.2f} points={n} received_events={received} dropped={stats['dropped_points']} "
              f"export_failed_spans={stats['export_failed_spans']}")
    finally:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
