"""Ingest throughput: LLM-shaped spans sent by the OpenTelemetry SDK's OTLP/gRPC exporter (in
separate processes) through ``orbitwatch gateway`` (its own process) into Kafka, acked.

    ORBITWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092 python bench/ingest.py [--seconds 10] [--telemetrygen PATH]

Prints one line, each client phase measured over the same window length:
* ``python-sdk``: spans/s acknowledged by Kafka (the gateway's ``items_accepted`` counter) while
  opentelemetry-sdk OTLP/gRPC exporters in separate processes send; their own success count is a
  cross-check. The SDK's Python encoder (~30 µs/span) makes this phase client-bound on 2 cores.
* ``telemetrygen`` (if installed): the same with the OpenTelemetry Collector's Go load generator;
  "generated" counts what it created (its batch processor drops spans when the exporter lags).
* ``gw_cpu``: gateway process CPU-seconds per 100k acked spans in that phase.
* ``gw_only``: the gateway fed pre-encoded requests by a raw gRPC client (its own ceiling).
* ``raw aiokafka``: the records the gateway would produce for the same spans, produced straight to
  Kafka with the same producer settings (the baseline: broker + aiokafka without the gateway).

Spans: traces of 4 spans (python-sdk: agent → retriever, llm, tool), each with 9-10 attributes
including a 0.5 KB input and a 0.3 KB output (≈1.1 KB per span on the wire); 512 spans per Export.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
import urllib.request
import uuid

BATCH = 512


def llm_spans(n_traces: int):
    """Finished SDK spans shaped like an LLM app's (created once; re-exported in a loop)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "rag-bot", "orbitwatch.project": "bench"}))
    tp.add_span_processor(SimpleSpanProcessor(mem))
    tr = tp.get_tracer("bench.ingest", "1.0")
    prompt = json.dumps({"messages": [{"role": "system", "content": "You are a helpful assistant. " * 4},
                                      {"role": "user", "content": "How do I rotate my API key? " * 8}]})[:500]
    answer = json.dumps({"content": "Open Settings → API keys, create a new key, deploy it, revoke the old. " * 4})[:300]
    for t in range(n_traces):
        common = {"orbitwatch.session.id": f"s{t % 97}", "orbitwatch.user.id": f"u{t % 31}",
                  "orbitwatch.input": prompt, "orbitwatch.output": answer}
        with tr.start_as_current_span("agent", attributes={"orbitwatch.span.type": "agent", **common,
                                                           "gen_ai.agent.name": "support", "turn": t % 7,
                                                           "orbitwatch.tags": '["prod","v2"]', "env": "prod"}):
            with tr.start_as_current_span("retrieve", attributes={
                    "orbitwatch.span.type": "retriever", **common, "retrieval.top_k": 5, "db.system": "qdrant",
                    "db.collection.name": "kb-articles", "retrieval.latency_ms": 41.5}):
                pass
            with tr.start_as_current_span("chat gpt-4o-mini", attributes={
                    "orbitwatch.span.type": "llm", "gen_ai.system": "openai", "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 812,
                    "gen_ai.usage.output_tokens": 96, **common}):
                pass
            with tr.start_as_current_span("tool lookup_account", attributes={
                    "orbitwatch.span.type": "tool", **common, "tool.name": "lookup_account",
                    "tool.call.id": f"call_{t}", "http.status_code": 200, "retry": 0}):
                pass
    spans = list(mem.get_finished_spans())
    tp.shutdown()
    return spans


def client(endpoint: str, until: float, threads: int, out: mp.Queue) -> None:
    """One exporter process: ``threads`` OTLPSpanExporters re-exporting batches until ``until``."""
    import threading

    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    spans = llm_spans(BATCH // 4 * 2)
    batches = [spans[i:i + BATCH] for i in range(0, len(spans), BATCH)]
    counts = [0] * threads

    def run(i: int) -> None:
        exp = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=30)
        k = 0
        while time.time() < until:
            b = batches[k % len(batches)]
            k += 1
            if exp.export(b) == SpanExportResult.SUCCESS:
                counts[i] += len(b)
        exp.shutdown()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(sum(counts))


def accepted(http_port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "orbitwatch_gateway_items_accepted_total" and s.labels.get("signal") == "traces":
                return s.value
    return 0.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def raw_produce(bootstrap: str, prefix: str, seconds: float) -> float:
    """Baseline: the gateway's per-trace records for the same spans, produced directly (spans/s)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from orbitwatch.ingest.publisher import KafkaPublisher
    from orbitwatch.ingest.split import split_traces

    body = encode_spans(llm_spans(BATCH // 4)).SerializeToString()
    pub = KafkaPublisher(bootstrap, topic_prefix=prefix)
    await pub.start()
    split = split_traces(body, partitions=await pub.partitions("otlp.traces"))  # what the gateway produces
    records = [(k, v, {"orbitwatch-tenant": b"default", "orbitwatch-schema": b"1"}) for k, v in split.records]
    sent, t0 = 0, time.perf_counter()
    inflight: set[asyncio.Task] = set()
    while time.perf_counter() - t0 < seconds:
        while len(inflight) < 8:  # like 8 concurrent Export requests
            inflight.add(asyncio.create_task(pub.publish("otlp.traces", records)))
        done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
        sent += sum(split.accepted for d in done if d.result() is None)
    for d in await asyncio.gather(*inflight):
        sent += split.accepted
    rate = sent / (time.perf_counter() - t0)
    await pub.stop()
    return rate


async def gateway_only(endpoint: str, seconds: float, concurrency: int = 8) -> float:
    """Pre-encoded Export requests from a raw grpc.aio client: the gateway's own ceiling (spans/s)."""
    import grpc
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    body = encode_spans(llm_spans(BATCH // 4)).SerializeToString()
    sent = 0
    async with grpc.aio.insecure_channel(endpoint) as ch:
        call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                              request_serializer=None, response_deserializer=None)
        t0 = time.perf_counter()

        async def worker() -> None:
            nonlocal sent
            while time.perf_counter() - t0 < seconds:
                await call(body, timeout=30)
                sent += BATCH

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sent / (time.perf_counter() - t0)


TG_INPUT = ("How do I rotate my API key for the billing service without downtime " * 8)[:500]
TG_OUTPUT = ("Open Settings then API keys, create a new key, deploy it, then revoke the old one " * 5)[:300]


def find_telemetrygen(given: str | None) -> str | None:
    import shutil
    if given:
        return given
    gopath = os.environ.get("GOPATH", os.path.expanduser("~/go"))
    for cand in (shutil.which("telemetrygen"), os.path.join(gopath, "bin", "telemetrygen")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def telemetrygen_args(binary: str, endpoint: str, seconds: float, workers: int, rate: float) -> list[str]:
    """The OpenTelemetry Collector's load generator (Go SDK, OTLP/gRPC exporter, batch span processor):
    traces of 4 spans, each with the LLM-shaped attributes below (10 per span)."""
    attrs = {"orbitwatch.input": f'"{TG_INPUT}"', "orbitwatch.output": f'"{TG_OUTPUT}"',
             "orbitwatch.span.type": '"llm"', "gen_ai.system": '"openai"', "gen_ai.operation.name": '"chat"',
             "gen_ai.request.model": '"gpt-4o-mini"', "gen_ai.usage.input_tokens": "812",
             "gen_ai.usage.output_tokens": "96", "orbitwatch.session.id": '"s-42"', "orbitwatch.user.id": '"u-7"'}
    args = [binary, "traces", "--otlp-endpoint", endpoint, "--otlp-insecure", "--duration", f"{seconds:g}s",
            "--workers", str(workers), "--rate", f"{rate:g}", "--child-spans", "3", "--batch-size", "512",
            "--service", "rag-bot"]
    for k, v in attrs.items():
        args += ["--telemetry-attributes", f"{k}={v}"]
    return args


class Window:
    """Gateway counters and CPU time between two instants."""

    def __init__(self, http_port: int, pid: int) -> None:
        self.http_port, self.pid = http_port, pid
        self.a0, self.c0, self.t0 = accepted(http_port), cpu_seconds(pid), time.perf_counter()

    def close(self) -> tuple[float, float, float]:
        """(spans/s acked, gateway CPU-s per 100k spans, spans acked)."""
        a1, c1, t1 = accepted(self.http_port), cpu_seconds(self.pid), time.perf_counter()
        n = a1 - self.a0
        return n / (t1 - self.t0), (c1 - self.c0) / max(n, 1) * 1e5, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per client phase")
    ap.add_argument("--clients", type=int, default=2, help="SDK exporter processes")
    ap.add_argument("--threads", type=int, default=2, help="exporters (threads) per SDK process")
    ap.add_argument("--telemetrygen", default=None, help="telemetrygen binary (default: PATH or $GOPATH/bin); "
                    "go install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v0.161.0")
    ap.add_argument("--tg-procs", type=int, default=3)
    ap.add_argument("--tg-workers", type=int, default=15)
    ap.add_argument("--tg-rate", type=float, default=2500, help="spans/s per telemetrygen worker")
    ap.add_argument("--kafka", default=os.environ.get("ORBITWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    args = ap.parse_args()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    grpc_port, http_port = free_port(), free_port()
    gw = subprocess.Popen([sys.executable, "-m", "orbitwatch.cli", "gateway", "--no-auth", "--kafka", args.kafka,
                           "--host", "127.0.0.1", "--grpc-port", str(grpc_port), "--http-port", str(http_port),
                           "--log-level", "error"], env=dict(os.environ, ORBITWATCH_TOPIC_PREFIX=prefix),
                          stdout=subprocess.DEVNULL)
    tg_part = "telemetrygen: not installed"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if gw.poll() is not None or time.time() > deadline:
                    raise SystemExit("gateway did not start")
                time.sleep(0.2)
        endpoint = f"127.0.0.1:{grpc_port}"

        # 1. opentelemetry-sdk (Python) OTLP/gRPC exporters in separate processes, after a warm-up
        ctx = mp.get_context("spawn")
        until = time.time() + 4.0 + args.seconds + 0.5
        q = ctx.Queue()
        procs = [ctx.Process(target=client, args=(endpoint, until, args.threads, q)) for _ in range(args.clients)]
        for p in procs:
            p.start()
        time.sleep(4.0)  # process start-up (imports, span creation) and warm-up
        w = Window(http_port, gw.pid)
        time.sleep(max(1.0, until - time.time() - 0.5))
        sdk_rate, sdk_cpu, _ = w.close()
        client_total = sum(q.get(timeout=60) for _ in procs)
        for p in procs:
            p.join()

        # 2. telemetrygen (Go), when installed
        tg = find_telemetrygen(args.telemetrygen)
        if tg:
            secs = args.seconds + 1.5
            tgs = [subprocess.Popen(telemetrygen_args(tg, endpoint, secs, args.tg_workers, args.tg_rate),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                   for _ in range(args.tg_procs)]
            time.sleep(1.0)
            w = Window(http_port, gw.pid)
            time.sleep(args.seconds)
            tg_rate, tg_cpu, _ = w.close()
            import re
            generated = sum(4 * int(n) for p in tgs for n in re.findall(r'"traces": (\d+)', p.communicate()[1]))
            tg_part = (f"telemetrygen ({args.tg_procs} procs x {args.tg_workers} workers): {tg_rate:,.0f} spans/s acked, "
                       f"gw_cpu {tg_cpu:.2f} CPU-s/100k, {generated:,} spans generated")

        gw_only = asyncio.run(gateway_only(endpoint, 4.0))
        raw = asyncio.run(raw_produce(args.kafka, prefix, 4.0))
    finally:
        gw.terminate()
        gw.wait(30)
    best = max(sdk_rate, tg_rate if tg else 0.0)
    print(f"ingest: python-sdk ({args.clients} procs x {args.threads}): {sdk_rate:,.0f} spans/s acked, gw_cpu "
          f"{sdk_cpu:.2f} CPU-s/100k ({client_total:,} sent OK) | {tg_part} | gw_only (pre-encoded) {gw_only:,.0f} "
          f"spans/s | raw aiokafka {raw:,.0f} spans/s | best e2e/raw {best / raw:.2f}, gw_only/raw {gw_only / raw:.2f} "
          f"| {os.cpu_count()} cores, broker local")


if __name__ == "__main__":
    main()
