"""Sink throughput: spans/s per worker from a pre-filled Kafka topic into ClickHouse (chdb). One line.

Workload: OTLP messages of 100 spans (one resource), 70 % plain HTTP/DB spans (8 attributes), 30 % LLM
spans with OTel GenAI attributes (model, provider, tokens, input/output messages) → priced, normalised.

Stages, measured in the same run on the same bytes so the bottleneck is visible:

* ``parse``     — protobuf parse + walk every span (baseline: the floor any Python consumer pays)
* ``decode``    — the sink's decoder without normalisation (parse + attributes → columns)
* ``normalise`` — ``normalise()`` alone on pre-decoded attribute dicts
* ``insert``    — columnar inserts of pre-decoded columns into chdb (25k rows per insert, the sink default)
* ``processor`` — ``SinkProcessor.handle`` alone on the same messages (no Kafka, no faust)
* ``sink``      — the real thing: the faust worker (FaustRunner) consuming the pre-filled topic,
  decoding, normalising, inserting, publishing LLM-span envelopes, committing; timed from the first
  to the last inserted batch.

Usage: ORBITWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092 python bench/sink.py [spans]   (default 200000)
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orbitwatch.processors.sink import DEFAULT_MAX_ROWS, SinkProcessor  # noqa: E402
from orbitwatch.processors.sink import metrics as M  # noqa: E402
from orbitwatch.processors.sink.decode import SPAN_COLUMNS, Columns, TraceStats, attrs_to_dict, decode_traces  # noqa: E402
from orbitwatch.processors.sink.normalise import normalise  # noqa: E402
from orbitwatch.processors.sink.prices import PriceTable  # noqa: E402
from orbitwatch.storage import Storage, migrate  # noqa: E402
from tests.test_sink_builders import request  # noqa: E402

SPANS_PER_MSG = 100


def workload(n_msgs: int) -> list[bytes]:
    now = time.time_ns()
    out = []
    for m in range(n_msgs):
        spans = []
        for j in range(SPANS_PER_MSG):
            sid = f"{m:08x}{j:08x}"
            if j % 10 < 7:
                attrs = {"http.request.method": "GET", "http.route": f"/api/items/{j % 5}", "url.path": f"/api/items/{j}",
                         "http.response.status_code": 200, "server.address": "api.internal", "server.port": 8080,
                         "network.protocol.version": "1.1", "user_agent.original": "python-httpx/0.27"}
            else:
                attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                         "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                         "gen_ai.usage.input_tokens": 120 + j, "gen_ai.usage.output_tokens": 40,
                         "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"content": f"q{j}"}]}]),
                         "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"content": "a"}]}])}
            spans.append({"trace_id": f"{m:032x}", "span_id": sid, "name": f"span-{j % 7}", "attrs": attrs,
                          "start": now + j * 1000, "end": now + j * 1000 + 5_000_000, "kind": 2})
        out.append(request(spans, resource={"service.name": "bench", "host.name": "h1"}).SerializeToString())
    return out


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_parse(msgs: list[bytes]) -> float:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    t = time.perf_counter()
    n = 0
    for data in msgs:
        req = ExportTraceServiceRequest.FromString(data)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    s.span_id  # touch
                    n += 1
    return rate(n, time.perf_counter() - t)


def bench_decode(msgs: list[bytes], prices: PriceTable, with_normalise: bool) -> float:
    import orbitwatch.processors.sink.normalise as N
    saved = N.normalise
    if not with_normalise:
        N.normalise = lambda attrs, prices, events=None: None  # decode only: skip the LLM columns
    try:
        t = time.perf_counter()
        cols = Columns(SPAN_COLUMNS)
        stats = TraceStats()
        for data in msgs:
            decode_traces(data, "t", "", "default", prices, cols, lambda *a: None, stats)
        return rate(stats.spans, time.perf_counter() - t)
    finally:
        N.normalise = saved


def bench_normalise(msgs: list[bytes], prices: PriceTable) -> float:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    dicts = [attrs_to_dict(s.attributes) for data in msgs
             for rs in ExportTraceServiceRequest.FromString(data).resource_spans
             for ss in rs.scope_spans for s in ss.spans]
    t = time.perf_counter()
    for d in dicts:
        normalise(d, prices)
    return rate(len(dicts), time.perf_counter() - t)


def bench_insert(msgs: list[bytes], prices: PriceTable, storage: Storage) -> float:
    cols = Columns(SPAN_COLUMNS)
    stats = TraceStats()
    for data in msgs:
        decode_traces(data, "t", "", "default", prices, cols, lambda *a: None, stats)
    n = len(cols)
    t = time.perf_counter()
    for start in range(0, n, DEFAULT_MAX_ROWS):
        storage.insert_columns("spans", cols.names, [c[start:start + DEFAULT_MAX_ROWS] for c in cols.data])
    return rate(n, time.perf_counter() - t)


def bench_processor(msgs: list[bytes], storage: Storage) -> float:
    """SinkProcessor.handle alone (no Kafka, no faust): decode + normalise + insert + emits, batches of 1000."""
    from orbitwatch.processors.base import Message
    sink = SinkProcessor(storage)
    batches = [[Message("otlp.traces", m, b"k", {"orbitwatch-tenant": b"bench"}, 0, i + j)
                for i, m in enumerate(msgs[j:j + 1000])] for j in range(0, len(msgs), 1000)]
    t = time.perf_counter()
    for b in batches:
        sink.handle(b)
    return rate(len(msgs) * SPANS_PER_MSG, time.perf_counter() - t)


async def bench_sink(msgs: list[bytes], storage: Storage, bootstrap: str) -> tuple[float, int]:
    from aiokafka import AIOKafkaProducer

    from orbitwatch.ingest.kafka_admin import create_topics
    from orbitwatch.processors.runners.faust_app import FaustRunner

    prefix = f"bench{uuid.uuid4().hex[:8]}."
    await create_topics(bootstrap, prefix=prefix, partitions=4)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=8 << 20, compression_type="lz4")
    await producer.start()
    futs = [await producer.send(f"{prefix}otlp.traces", m, key=f"{i:032x}".encode(),
                                headers=[("orbitwatch-tenant", b"bench")]) for i, m in enumerate(msgs)]
    await asyncio.gather(*futs)
    await producer.stop()

    total = len(msgs) * SPANS_PER_MSG
    written = M.ROWS_WRITTEN.labels("spans")
    base = written._value.get()
    handle_base = M.BATCH_SECONDS._sum.get()
    runner = FaustRunner([SinkProcessor(storage)], bootstrap=bootstrap, topic_prefix=prefix, batch_size=1000,
                         batch_seconds=1.0, datadir=str(Path(storage.dsn.removeprefix("chdb://")).parent / "faust"))
    await runner.start()
    first = last = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = written._value.get() - base
            if got > 0 and first is None:
                first = (time.perf_counter(), got, time.process_time())
            if got >= total:
                last = time.perf_counter()
                cpu = time.process_time() - first[2]
                break
            await asyncio.sleep(0.01)
    finally:
        await runner.stop()
    if first is None or last is None:
        raise SystemExit(f"sink did not finish: {written._value.get() - base}/{total} rows")
    handle_s = M.BATCH_SECONDS._sum.get() - handle_base
    return (rate(total - first[1], last - first[0]), total, min(1.0, handle_s / max(1e-9, last - first[0])),
            rate(total - first[1], cpu))


def main() -> None:
    n_spans = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    bootstrap = os.environ.get("ORBITWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    msgs = workload(max(1, n_spans // SPANS_PER_MSG))
    prices = PriceTable.load()
    tmp = tempfile.mkdtemp(prefix="bench-sink-")
    parse = bench_parse(msgs)
    decode = bench_decode(msgs, prices, with_normalise=False)
    full_decode = bench_decode(msgs, prices, with_normalise=True)
    norm = bench_normalise(msgs, prices)
    storage = Storage(f"chdb://{tmp}/insert")
    migrate(storage)
    insert = bench_insert(msgs, prices, storage)
    storage.close()
    storage = Storage(f"chdb://{tmp}/processor")
    migrate(storage)
    processor = bench_processor(msgs, storage)
    storage.close()
    storage = Storage(f"chdb://{tmp}/sink")
    migrate(storage)
    sink, total, handle_share, sink_cpu = asyncio.run(bench_sink(msgs, storage, bootstrap))
    stored = storage.scalar("SELECT count() FROM spans FINAL")
    storage.close()
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    assert stored == total, f"stored {stored} of {total}"
    print(f"sink {sink:,.0f} spans/s per worker (target 50,000; {total:,} spans, 30% LLM, faust+chdb, worker defaults; "
          f"{sink_cpu:,.0f} spans per CPU-second of the worker process) | "
          f"decode-only {decode:,.0f}/s, decode+normalise {full_decode:,.0f}/s, normalise-only {norm:,.0f}/s, "
          f"insert-only {insert:,.0f}/s, SinkProcessor.handle without Kafka {processor:,.0f}/s, handle() {handle_share:.0%} of sink wall time | baseline protobuf parse {parse:,.0f}/s; sink = {sink / parse:.2f}x "
          f"baseline, decode = {decode / parse:.2f}x")


if __name__ == "__main__":
    main()
