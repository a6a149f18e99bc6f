"""@track overhead per call, on top of a bare OpenTelemetry span, with the OTLP exporter in place.

    python bench/sdk_overhead.py [--calls 2000] [--rounds 40]

Both sides export over OTLP/gRPC to a real receiver running in a separate process
(tests/otlp_receiver.py), so the exporter thread competes for the GIL exactly as in
production. Baseline: an application's own SDK TracerProvider + BatchSpanProcessor +
OTLPSpanExporter, ``with tracer.start_as_current_span(...)`` around the same function.
Rounds alternate baseline / @track to cancel drift on this shared machine; every call is timed
individually and medians are reported. The @track function takes a short string and returns
a short string, so input and output JSON capture are included in the figure.

Prints one line: bare-span median, @track median, added median (target ≤ 15 µs), p90s, and a
plain (uninstrumented) call for scale.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_receiver() -> tuple[subprocess.Popen, str]:
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from tests.otlp_receiver import OtlpReceiver\n"
            "rx = OtlpReceiver(max_message_bytes=64 << 20).start()\n"
            "print(rx.endpoint, flush=True)\n"
            "sys.stdin.read()\n") % str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    endpoint = proc.stdout.readline().strip()  # type: ignore[union-attr]
    return proc, endpoint


def timed(fn, n: int, out: list[float]) -> None:
    pc = time.perf_counter_ns
    for i in range(n):
        t0 = pc()
        fn("question %d" % i)
        out.append(pc() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000, help="calls per round and side (below both queue sizes)")
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()

    proc, endpoint = start_receiver()
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        import orbitwatch
        from orbitwatch import track

        app_provider = TracerProvider()
        app_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        tracer = app_provider.get_tracer("bench")
        orbitwatch.configure(endpoint=endpoint, project="bench-overhead")

        def plain(q: str) -> str:
            return q.upper()

        def bare(q: str) -> str:
            with tracer.start_as_current_span("bare"):
                return q.upper()

        @track
        def tracked(q: str) -> str:
            return q.upper()

        for fn in (plain, bare, tracked):  # warm up
            timed(fn, 2000, [])
        app_provider.force_flush()
        orbitwatch.flush(30)
        samples: dict[str, list[float]] = {"plain": [], "bare": [], "track": []}
        for _ in range(args.rounds):
            timed(plain, args.calls // 4, samples["plain"])
            timed(bare, args.calls, samples["bare"])
            app_provider.force_flush()  # let both exporters catch up so neither runs with a full queue
            timed(tracked, args.calls, samples["track"])
            orbitwatch.flush(30)
        app_provider.shutdown()
        stats = orbitwatch.transport.stats()

        def med(k: str) -> float:
            return statistics.median(samples[k]) / 1000

        def p90(k: str) -> float:
            return statistics.quantiles(samples[k], n=10)[-1] / 1000

        added = med("track") - med("bare")
        print(f"sdk_overhead: bare_otel_span_median={med('bare'):.2f}us track_median={med('track'):.2f}us "
              f"added_median={added:.2f}us (target<=15us) ratio_track/bare={med('track') / med('bare'):.2f}x "
              f"p90 bare={p90('bare'):.2f}us track={p90('track'):.2f}us plain_call={med('plain'):.2f}us "
              f"calls={len(samples['track'])}/side exported={stats['exported_spans']} "
              f"dropped={stats['dropped_spans']}")
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=10)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("ORBITWATCH_FLUSH_INTERVAL", "0.5")
    main()
