"""End-to-end latency: OTLP export → row queryable in ClickHouse, at a steady 5,000 spans/s. One line.

Real processes, real path: this script is the OTLP/gRPC client; ``orbitwatch gateway`` (subprocess)
receives, splits per trace and produces to Kafka; ``orbitwatch worker --only sink`` (subprocess, chdb)
consumes, decodes, normalises, inserts. Every span carries its send time (``bench.sent_ns``); the
latency of a span is ``inserted_at`` (set by ClickHouse when the insert lands, i.e. when the row
becomes queryable) minus that send time. The chdb directory belongs to the worker while it runs, so
the rows are read after it stopped. Baseline in the same run: the export RPC latency (the gateway
answers after Kafka acknowledged), i.e. what the pipeline adds on top of ingest.

Usage: ORBITWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092 python bench/e2e_latency.py [seconds] [spans_per_s]
       (defaults 20 s at 5000 spans/s; worker defaults: --batch-size 1000 --batch-seconds 1.0)
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_sink_builders import request  # noqa: E402

SPANS_PER_TRACE = 10
TRACES_PER_REQUEST = 5  # 50 spans per export call → 100 calls/s at 5k spans/s
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_request(seq: int, phase: str) -> bytes:
    sent = time.time_ns()
    spans = []
    for t in range(TRACES_PER_REQUEST):
        tid = f"{seq:024x}{t:08x}"
        for j in range(SPANS_PER_TRACE):
            attrs = {"bench.sent_ns": str(sent), "bench.phase": phase, "http.route": "/x"}
            if j == 0:
                attrs.update({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                              "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20})
            spans.append({"trace_id": tid, "span_id": f"{t + 1:08x}{j + 1:08x}", "name": f"op{j}", "attrs": attrs,
                          "start": sent - 5_000_000, "end": sent})
    return request(spans, resource={"service.name": "e2e"}).SerializeToString()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def committed_all(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        await c._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in (c.partitions_for_topic(topic) or ())]
        ends = await c.end_offsets(tps)
        got = 0
        for tp in tps:
            got += (await c.committed(tp)) or 0
        return got, sum(ends.values())
    finally:
        await c.stop()


def main() -> None:
    import grpc

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 5000.0
    bootstrap = os.environ.get("ORBITWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    prefix = f"e2e{uuid.uuid4().hex[:8]}."
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    env = dict(os.environ, ORBITWATCH_TOPIC_PREFIX=prefix, ORBITWATCH_KAFKA_BOOTSTRAP=bootstrap)
    port = free_port()
    cli = [sys.executable, "-m", "orbitwatch.cli"]
    log = open(tmp / "procs.log", "ab")
    worker = subprocess.Popen(cli + ["worker", "--only", "sink", "--clickhouse", f"chdb://{tmp / 'ch'}",
                                     "--data-dir", str(tmp / "data")], env=env, stdout=log, stderr=log)
    gateway = subprocess.Popen(cli + ["gateway", "--no-auth", "--host", "127.0.0.1", "--grpc-port", str(port),
                                      "--http-port", "-1", "--log-level", "warning"], env=env, stdout=log, stderr=log)
    rpc: list[float] = []
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        interval = SPANS_PER_TRACE * TRACES_PER_REQUEST / rate
        seq = 0
        # warm-up until the worker has joined its group and committed something
        deadline = time.monotonic() + 90
        while True:
            for _ in range(10):
                export(make_request(seq, "warmup"), timeout=10)
                seq += 1
            got, _ = asyncio.run(committed_all(bootstrap, f"{prefix}orbitwatch-sink", f"{prefix}otlp.traces"))
            if got > 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"worker did not start; see {tmp / 'procs.log'}")
            time.sleep(0.5)
        # the measured phase: a steady rate, paced on absolute times so slow calls do not lower it
        start = time.monotonic()
        n_req = int(seconds / interval)
        for i in range(n_req):
            target = start + i * interval
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            data = make_request(seq, "measure")
            seq += 1
            t0 = time.perf_counter()
            export(data, timeout=10)
            rpc.append(time.perf_counter() - t0)
        achieved = n_req * SPANS_PER_TRACE * TRACES_PER_REQUEST / (time.monotonic() - start)
        deadline = time.monotonic() + 60
        while True:  # drain: everything produced is committed (so inserted) by the worker
            got, end = asyncio.run(committed_all(bootstrap, f"{prefix}orbitwatch-sink", f"{prefix}otlp.traces"))
            if got >= end or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        channel.close()
    finally:
        gateway.send_signal(signal.SIGTERM)
        worker.send_signal(signal.SIGTERM)
        gateway.wait(30)
        worker.wait(30)

    from orbitwatch.storage import Storage
    st = Storage(f"chdb://{tmp / 'ch'}")
    (n, p50, p95, p99, mx), = st.query(
        "SELECT count(), quantilesExact(0.5, 0.95, 0.99)(lat)[1], quantilesExact(0.5, 0.95, 0.99)(lat)[2], "
        "quantilesExact(0.5, 0.95, 0.99)(lat)[3], max(lat) FROM (SELECT toUnixTimestamp64Milli(inserted_at) - "
        "intDiv(toInt64(span_attributes['bench.sent_ns']), 1000000) AS lat FROM spans FINAL "
        "WHERE span_attributes['bench.phase'] = 'measure')")[1]
    st.close()
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    expected = n_req * SPANS_PER_TRACE * TRACES_PER_REQUEST
    print(f"e2e OTLP export -> row queryable at {achieved:,.0f} spans/s for {seconds:.0f}s: p50 {p50 / 1000:.3f}s "
          f"p95 {p95 / 1000:.3f}s p99 {p99 / 1000:.3f}s max {mx / 1000:.3f}s (target p95 <= 2 s; {n:,}/{expected:,} "
          f"spans stored; gateway+worker subprocesses, worker batch 1000 msgs / 1.0 s) | baseline export RPC "
          f"(gateway ack after Kafka) p50 {pct(rpc, .5) * 1000:.1f}ms p95 {pct(rpc, .95) * 1000:.1f}ms; "
          f"pipeline adds {(p50 / 1000) / max(1e-9, pct(rpc, .5)):.0f}x the RPC p50")


if __name__ == "__main__":
    main()
