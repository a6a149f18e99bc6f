"""Ingest throughput: LLM-shaped spans sent by the OpenTelemetry SDK's OTLP/gRPC exporter (in
separate processes) through ``orbitwatch gateway`` (its own process) into Kafka, acked.

    ORBITWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092 python bench/ingest.py [--seconds 15] [--clients 2]

Prints one line:
* ``e2e``: spans/s acknowledged by Kafka (the gateway's ``items_accepted`` counter over the window;
  the clients' own success count is printed alongside as a cross-check),
* ``gw_cpu``: gateway process CPU-seconds per 100k spans,
* ``raw``: the same per-trace records produced straight to Kafka with the same producer settings,
  from this process (the baseline: what the broker + aiokafka take without the gateway),
* ``gw_only``: the gateway fed pre-encoded requests by a raw gRPC client (its ceiling when the client's
  encoding cost is out of the picture), and the ratios e2e/raw and gw_only/raw.

Spans: traces of 4 spans (agent → retriever, llm, tool), each with 9-10 attributes including a
0.5 KB JSON input and a 0.3 KB JSON output (≈1.1 KB per span on the wire); batches of 512 spans per
Export (the SDK's default).
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clients", type=int, default=2, help="exporter processes")
    ap.add_argument("--threads", type=int, default=2, help="exporters (threads) per process")
    ap.add_argument("--kafka", default=os.environ.get("ORBITWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    args = ap.parse_args()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    grpc_port, http_port = free_port(), free_port()
    gw = subprocess.Popen([sys.executable, "-m", "orbitwatch.cli", "gateway", "--no-auth", "--kafka", args.kafka,
                           "--host", "127.0.0.1", "--grpc-port", str(grpc_port), "--http-port", str(http_port),
                           "--log-level", "warning"], env=dict(os.environ, ORBITWATCH_TOPIC_PREFIX=prefix),
                          stdout=subprocess.DEVNULL)
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
        # e2e: SDK exporters in separate processes; measure after a 3 s warm-up
        warm, until = 3.0, time.time() + 3.0 + args.seconds + 0.5
        q: mp.Queue = mp.get_context("spawn").Queue()
        procs = [mp.get_context("spawn").Process(target=client, args=(endpoint, until, args.threads, q))
                 for _ in range(args.clients)]
        for p in procs:
            p.start()
        time.sleep(warm + 2.0)  # + process start-up (imports, span creation)
        a0, c0, t0 = accepted(http_port), cpu_seconds(gw.pid), time.perf_counter()
        time.sleep(max(1.0, until - time.time() - 0.5))
        a1, c1, t1 = accepted(http_port), cpu_seconds(gw.pid), time.perf_counter()
        client_total = sum(q.get(timeout=60) for _ in procs)
        for p in procs:
            p.join()
        e2e = (a1 - a0) / (t1 - t0)
        cpu_per_100k = (c1 - c0) / max(a1 - a0, 1) * 1e5
        gw_only = asyncio.run(gateway_only(endpoint, 5.0))
        raw = asyncio.run(raw_produce(args.kafka, prefix, 5.0))
    finally:
        gw.terminate()
        gw.wait(30)
    print(f"ingest: e2e {e2e:,.0f} spans/s acked (SDK OTLP/gRPC exporters: {args.clients} procs x {args.threads}, "
          f"{client_total:,} spans sent OK) | gw_cpu {cpu_per_100k:.2f} CPU-s/100k spans | gw_only {gw_only:,.0f} "
          f"spans/s (pre-encoded) | raw aiokafka {raw:,.0f} spans/s | e2e/raw {e2e / raw:.2f} "
          f"gw_only/raw {gw_only / raw:.2f} | {os.cpu_count()} cores, broker local")


if __name__ == "__main__":
    main()
