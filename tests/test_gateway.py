"""The ingest gateway against a real broker: what an OTLP client sends arrives in Kafka, keyed by
trace id and stamped with the tenant; every refusal has its documented status code."""
from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orbitwatch.ingest.auth import Auth
from orbitwatch.ingest.publisher import KafkaPublisher, PublishUnavailable, key_partition
from orbitwatch.ingest.split import split_traces
from orbitwatch.schemas.attributes import PROJECT_HEADER, SCHEMA_HEADER, TENANT_HEADER
from tests.test_gateway_support import KEY, consume, scrape, start_gateway

pytestmark = pytest.mark.kafka
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def make_spans(endpoint: str, headers: dict[str, str] | None, traces: int = 3, per_trace: int = 3,
               timeout: float = 30):
    """Create spans with the OpenTelemetry SDK and export them with its OTLP/gRPC exporter (one batch).
    Returns what the SDK finished, as the exporter encodes it."""
    memory = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "checkout", "orbitwatch.project": "spoofed"}))
    tp.add_span_processor(SimpleSpanProcessor(memory))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, headers=headers, timeout=timeout)
    tp.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=512, schedule_delay_millis=60_000))
    tracer = tp.get_tracer("tests.gateway", "1.0")
    for t in range(traces):
        with tracer.start_as_current_span(f"agent {t}", attributes={"gen_ai.operation.name": "chat"}):
            for s in range(per_trace - 1):
                with tracer.start_as_current_span(f"llm {s}") as sp:
                    sp.set_attribute("gen_ai.request.model", "gpt-4o-mini")
                    sp.set_attribute("orbitwatch.input", json.dumps({"q": "x" * 200}))
    assert tp.force_flush(int(timeout * 1000) + 5000)
    tp.shutdown()
    return memory.get_finished_spans()


def expected_by_span_id(spans) -> dict[bytes, tuple]:
    req = encode_spans(spans)
    out = {}
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                out[span.span_id] = (rs.resource, ss.scope, span)
    return out


async def test_sdk_grpc_exporter_spans_arrive_in_kafka_keyed_by_trace_with_tenant(kafka, unique):
    prefix = f"t{unique}."
    gw = await start_gateway(kafka.bootstrap, prefix)
    try:
        spans = await asyncio.to_thread(make_spans, f"127.0.0.1:{gw.grpc_port}", {"authorization": f"Bearer {KEY}"})
        expected = expected_by_span_id(spans)
        assert len(expected) == 9
        got = await consume(kafka.bootstrap, prefix + "otlp.traces", 1, settle=1.5)
        seen, partition_of_trace = {}, {}
        for rec in got:
            headers = dict(rec.headers)
            assert headers[TENANT_HEADER] == b"acme"
            assert headers[PROJECT_HEADER] == b"checkout"  # from the key, not the spoofed attribute
            assert headers[SCHEMA_HEADER] == b"1"
            req = ExportTraceServiceRequest.FromString(rec.value)
            trace_ids = set()
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        resource, scope, want = expected[span.span_id]
                        assert (rs.resource, ss.scope, span) == (resource, scope, want)  # byte-for-byte equal
                        assert span.span_id not in seen
                        seen[span.span_id] = rec.partition
                        trace_ids.add(span.trace_id.hex().encode())
                        assert partition_of_trace.setdefault(span.trace_id, rec.partition) == rec.partition
            # keyed by trace id: the key is one of the record's trace ids, and all of them map to its partition
            assert rec.key in trace_ids
            assert {key_partition(t, 8) for t in trace_ids} == {rec.partition}
        assert set(seen) == set(expected)
        assert len(partition_of_trace) == 3
        m = await scrape(gw)
        assert m[("orbitwatch_gateway_items_received_total", (("signal", "traces"),))] == 9
        assert m[("orbitwatch_gateway_items_accepted_total", (("signal", "traces"),))] == 9
        assert m[("orbitwatch_gateway_records_published_total", (("signal", "traces"),))] == len(got)
        assert m[("orbitwatch_gateway_requests_total", (("code", "OK"), ("signal", "traces"), ("transport", "grpc")))] == 1
        assert m[("orbitwatch_gateway_produce_seconds_count", (("signal", "traces"),))] == 1
        assert m[("orbitwatch_gateway_inflight_bytes", ())] == 0
    finally:
        await gw.stop(1)


async def test_http_json_and_protobuf_gzip(kafka, unique):
    prefix = f"t{unique}."
    gw = await start_gateway(kafka.bootstrap, prefix)
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    doc = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
                              "scopeSpans": [{"scope": {"name": "manual"}, "spans": [{
                                  "traceId": trace_id, "spanId": span_id, "name": "GET /", "kind": 2,
                                  "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
                                  "attributes": [{"key": "http.status_code", "value": {"intValue": "200"}}],
                                  "unknownFieldIsIgnored": True}]}]}]}
    url = f"http://127.0.0.1:{gw.http_port}/v1/traces"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(url, json=doc, headers={"x-api-key": KEY}) as r:
                assert r.status == 200, await r.text()
                assert r.content_type == "application/json"
                assert await r.json() == {}
            # the same trace as gzip protobuf, with a second span
            req = ExportTraceServiceRequest()
            rs = req.resource_spans.add()
            rs.resource.attributes.add(key="service.name").value.string_value = "web"
            sp = rs.scope_spans.add().spans.add(trace_id=bytes.fromhex(trace_id), span_id=b"\x01" * 8, name="db")
            async with s.post(url, data=gzip.compress(req.SerializeToString()),
                              headers={"authorization": f"Bearer {KEY}", "content-type": "application/x-protobuf",
                                       "content-encoding": "gzip"}) as r:
                assert r.status == 200
                assert ExportTraceServiceResponse.FromString(await r.read()) == ExportTraceServiceResponse()
        got = await consume(kafka.bootstrap, prefix + "otlp.traces", 2)
        assert [r.key for r in got] == [trace_id.encode()] * 2
        assert got[0].partition == got[1].partition
        first = ExportTraceServiceRequest.FromString(got[0].value)
        span = first.resource_spans[0].scope_spans[0].spans[0]
        assert (span.trace_id.hex(), span.span_id.hex(), span.name, span.kind) == (trace_id, span_id, "GET /", 2)
        assert span.start_time_unix_nano == 1544712660000000000
        assert span.attributes[0].value.int_value == 200
        assert ExportTraceServiceRequest.FromString(got[1].value) == req
        assert dict(got[1].headers)[TENANT_HEADER] == b"acme"
    finally:
        await gw.stop(1)


async def _raw_export(port: int, body: bytes, metadata=()):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(TRACE_EXPORT, request_serializer=None, response_deserializer=None)
        return await call(body, metadata=metadata, timeout=10)


def _request(*spans: tuple[bytes, bytes]) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i, (tid, sid) in enumerate(spans):
        ss.spans.add(trace_id=tid, span_id=sid, name=f"s{i}")
    return req


async def test_refusals_have_documented_codes(kafka, unique):
    gw = await start_gateway(kafka.bootstrap, f"t{unique}.", max_message_bytes=10_000)
    good = _request((b"\x01" * 16, b"\x02" * 8)).SerializeToString()
    auth = (("authorization", f"Bearer {KEY}"),)
    try:
        for md, detail in (((), "missing API key"), ((("x-api-key", "not-a-key-123"),), "unknown API key")):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await _raw_export(gw.grpc_port, good, md)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and detail in e.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await _raw_export(gw.grpc_port, b"\xff\xff\xff garbage", auth)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "cannot decode ExportTraceServiceRequest" in e.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await _raw_export(gw.grpc_port, _request(*[(b"\x01" * 16, b"\x02" * 8)] * 400).SerializeToString(), auth)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 10000 bytes per request" in e.value.details()

        url = f"http://127.0.0.1:{gw.http_port}/v1/traces"
        pb = {"content-type": "application/x-protobuf"}
        async with aiohttp.ClientSession() as s:
            cases = [({**pb}, good, 401), ({**pb, "x-api-key": "nope-nope-nope"}, good, 401),
                     ({**pb, "x-api-key": KEY}, b"\xff\xff garbage", 400),
                     ({"content-type": "application/json", "x-api-key": KEY}, b"{not json", 400),
                     ({"content-type": "application/json", "x-api-key": KEY}, b'{"resourceSpans": [{"scopeSpans": '
                      b'[{"spans": [{"traceId": "zz"}]}]}]}', 400),
                     ({**pb, "x-api-key": KEY, "content-encoding": "gzip"}, b"not gzip", 400),
                     ({**pb, "x-api-key": KEY, "content-encoding": "gzip"}, gzip.compress(b"\x00" * 50_000), 413),
                     ({**pb, "x-api-key": KEY}, b"\x00" * 20_000, 413),
                     ({"content-type": "text/plain", "x-api-key": KEY}, good, 415)]
            for headers, body, status in cases:
                async with s.post(url, data=body, headers=headers) as r:
                    assert r.status == status, (headers, await r.text())
        m = await scrape(gw)
        req = lambda code, t: m.get(("orbitwatch_gateway_requests_total",  # noqa: E731
                                     (("code", code), ("signal", "traces"), ("transport", t))), 0)
        assert (req("UNAUTHENTICATED", "grpc"), req("INVALID_ARGUMENT", "grpc"), req("TOO_LARGE", "grpc")) == (2, 1, 1)
        assert (req("UNAUTHENTICATED", "http"), req("INVALID_ARGUMENT", "http"), req("TOO_LARGE", "http")) == (2, 4, 2)
        assert req("UNSUPPORTED_MEDIA_TYPE", "http") == 1
        assert m[("orbitwatch_gateway_items_received_total", (("signal", "traces"),))] == 0
    finally:
        await gw.stop(1)


async def test_invalid_ids_are_rejected_individually_with_partial_success(kafka, unique):
    prefix = f"t{unique}."
    gw = await start_gateway(kafka.bootstrap, prefix)
    tid = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    req = _request((tid, b"\x01" * 8), (bytes(16), b"\x02" * 8), (b"\x01" * 8, b"\x03" * 8),
                   (tid, bytes(8)), (tid, b"\x04" * 4), (tid, b"\x05" * 8))
    try:
        resp = ExportTraceServiceResponse.FromString(
            await _raw_export(gw.grpc_port, req.SerializeToString(), (("x-api-key", KEY),)))
        assert resp.partial_success.rejected_spans == 4
        assert "2 rejected: trace id" in resp.partial_success.error_message
        assert "2 rejected: span id" in resp.partial_success.error_message
        got = await consume(kafka.bootstrap, prefix + "otlp.traces", 1, settle=0.5)
        assert len(got) == 1 and got[0].key == tid.hex().encode()
        names = [s.name for s in ExportTraceServiceRequest.FromString(got[0].value).resource_spans[0]
                 .scope_spans[0].spans]
        assert names == ["s0", "s5"]
        async with aiohttp.ClientSession() as s:  # the same over OTLP/HTTP JSON
            doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
                {"traceId": tid.hex(), "spanId": "0102030405060708", "name": "ok"},
                {"traceId": "00" * 16, "spanId": "0102030405060708", "name": "zero trace"}]}]}]}
            async with s.post(f"http://127.0.0.1:{gw.http_port}/v1/traces", json=doc,
                              headers={"x-api-key": KEY}) as r:
                assert r.status == 200
                body = await r.json()
        assert body["partialSuccess"]["rejectedSpans"] == "1"
        m = await scrape(gw)
        rej = lambda reason: m[("orbitwatch_gateway_items_rejected_total",  # noqa: E731
                                (("reason", reason), ("signal", "traces")))]
        assert (rej("invalid_trace_id"), rej("invalid_span_id")) == (3, 2)
        assert m[("orbitwatch_gateway_items_received_total", (("signal", "traces"),))] == 8
        assert m[("orbitwatch_gateway_items_accepted_total", (("signal", "traces"),))] == 3
    finally:
        await gw.stop(1)


async def test_large_trace_is_split_into_records_under_the_limit(kafka, unique):
    prefix = f"t{unique}."
    gw = await start_gateway(kafka.bootstrap, prefix, max_record_bytes=50_000)
    tid = b"\x07" * 16
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in range(40):
        sp = ss.spans.add(trace_id=tid, span_id=(i + 1).to_bytes(8, "big"), name=f"s{i}")
        sp.attributes.add(key="orbitwatch.input").value.string_value = "x" * 5000
    big = ss.spans.add(trace_id=tid, span_id=b"\xff" * 8, name="huge")
    big.attributes.add(key="orbitwatch.input").value.string_value = "y" * 60_000
    try:
        resp = ExportTraceServiceResponse.FromString(
            await _raw_export(gw.grpc_port, req.SerializeToString(), (("x-api-key", KEY),)))
        assert resp.partial_success.rejected_spans == 1  # the one span larger than any record
        assert "larger than the record limit" in resp.partial_success.error_message
        got = await consume(kafka.bootstrap, prefix + "otlp.traces", 5, settle=0.5)
        assert all(len(r.value) <= 50_000 and r.key == tid.hex().encode() for r in got)
        assert len({r.partition for r in got}) == 1
        names = [s.name for r in got for s in ExportTraceServiceRequest.FromString(r.value)
                 .resource_spans[0].scope_spans[0].spans]
        assert sorted(names) == sorted(f"s{i}" for i in range(40))
    finally:
        await gw.stop(1)


async def test_metrics_and_logs_are_keyed_by_service(kafka, unique):
    prefix = f"t{unique}."
    gw = await start_gateway(kafka.bootstrap, prefix, auth=Auth.disabled())
    metrics = ExportMetricsServiceRequest()
    for svc in ("a", "b"):
        rm = metrics.resource_metrics.add()
        rm.resource.attributes.add(key="service.name").value.string_value = svc
        m = rm.scope_metrics.add().metrics.add(name="latency")
        for v in range(3):
            m.gauge.data_points.add(as_double=v)
    logs = ExportLogsServiceRequest()
    rl = logs.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "c"
    sl = rl.scope_logs.add()
    sl.log_records.add(severity_text="INFO").body.string_value = "hello"
    sl.log_records.add(trace_id=b"\x01" * 3).body.string_value = "bad trace id"
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            call = ch.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                                  request_serializer=None, response_deserializer=None)
            assert await call(metrics.SerializeToString(), compression=grpc.Compression.Gzip) == b""
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{gw.http_port}/v1/logs", data=logs.SerializeToString(),
                              headers={"content-type": "application/x-protobuf"}) as r:
                assert r.status == 200
            doc = {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name",
                                                                  "value": {"stringValue": "d"}}]},
                                     "scopeLogs": [{"logRecords": [{"body": {"stringValue": "json log"},
                                                                    "traceId": "0af7651916cd43dd8448eb211c80319c",
                                                                    "spanId": "b7ad6b7169203331"}]}]}]}
            async with s.post(f"http://127.0.0.1:{gw.http_port}/v1/logs", json=doc) as r:
                assert r.status == 200 and await r.json() == {}
        got_m = await consume(kafka.bootstrap, prefix + "otlp.metrics", 2)
        assert sorted(r.key for r in got_m) == [b"a", b"b"]
        assert all(dict(r.headers)[TENANT_HEADER] == b"default" for r in got_m)
        got_l = await consume(kafka.bootstrap, prefix + "otlp.logs", 2)
        by_key = {r.key: r for r in got_l}
        lr = ExportLogsServiceRequest.FromString(by_key[b"d"].value).resource_logs[0].scope_logs[0].log_records[0]
        assert (lr.body.string_value, lr.trace_id.hex(), lr.span_id.hex()) == (
            "json log", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
        got_l = [by_key[b"c"]]
        assert got_l[0].key == b"c"
        assert [r.body.string_value for r in ExportLogsServiceRequest.FromString(got_l[0].value)
                .resource_logs[0].scope_logs[0].log_records] == ["hello"]
        m = await scrape(gw)
        assert m[("orbitwatch_gateway_items_accepted_total", (("signal", "metrics"),))] == 6
        assert m[("orbitwatch_gateway_items_accepted_total", (("signal", "logs"),))] == 2
        assert m[("orbitwatch_gateway_items_rejected_total", (("reason", "invalid_trace_id"), ("signal", "logs")))] == 1
    finally:
        await gw.stop(1)


class GatedPublisher:
    """A real Kafka publisher that holds every publish until the test opens the gate, so requests
    pile up in flight deterministically."""

    def __init__(self, inner: KafkaPublisher) -> None:
        self.inner, self.gate, self.waiting = inner, asyncio.Event(), 0

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def ready(self) -> bool:
        return await self.inner.ready()

    async def publish(self, topic, records) -> None:
        self.waiting += 1
        await self.gate.wait()
        await self.inner.publish(topic, records)


async def test_inflight_cap_answers_resource_exhausted_with_retry_info(kafka, unique):
    from orbitwatch.ingest.gateway import Gateway
    prefix = f"t{unique}."
    pub = GatedPublisher(KafkaPublisher(kafka.bootstrap, topic_prefix=prefix))
    gw = Gateway(pub, Auth.disabled(), grpc_port=0, http_port=0, max_inflight_bytes=1000, retry_after_s=2.5)
    await gw.start()
    body = _request((b"\x01" * 16, b"\x02" * 8)).SerializeToString()
    filler = _request(*[(b"\x01" * 16, b"\x02" * 8)] * 20).SerializeToString()
    assert 1000 > len(filler) > 500
    try:
        first = asyncio.create_task(_raw_export(gw.grpc_port, filler))
        while pub.waiting < 1:
            await asyncio.sleep(0.01)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await _raw_export(gw.grpc_port, filler)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "in-flight limit" in e.value.details()
        from google.rpc.error_details_pb2 import RetryInfo
        info = RetryInfo.FromString(dict(e.value.trailing_metadata())["google.rpc.retryinfo-bin"])
        assert (info.retry_delay.seconds, info.retry_delay.nanos) == (2, 500_000_000)
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{gw.http_port}/v1/traces", data=filler,
                              headers={"content-type": "application/x-protobuf"}) as r:
                assert r.status == 429 and r.headers["Retry-After"] == "3"
        pub.gate.set()
        assert await first == b""
        assert await _raw_export(gw.grpc_port, body) == b""  # below the cap again
    finally:
        pub.gate.set()
        await gw.stop(1)


async def test_publisher_fails_fast_when_kafka_is_unreachable_and_readyz_says_so():
    from tests.conftest import free_port
    pub = KafkaPublisher(f"127.0.0.1:{free_port()}", connect_timeout_s=1, retry_after_s=0.5)
    from orbitwatch.ingest.gateway import Gateway
    gw = Gateway(pub, Auth.disabled(), grpc_port=0, http_port=0)
    await gw.start()  # starts even though Kafka is down; keeps reconnecting
    try:
        with pytest.raises(PublishUnavailable):
            await pub.publish("otlp.traces", [(None, b"x", {})])
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await _raw_export(gw.grpc_port, _request((b"\x01" * 16, b"\x02" * 8)).SerializeToString())
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "google.rpc.retryinfo-bin" in dict(e.value.trailing_metadata())
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{gw.http_port}/readyz") as r:
                assert r.status == 503
            async with s.get(f"http://127.0.0.1:{gw.http_port}/healthz") as r:
                assert r.status == 200
    finally:
        await gw.stop(1)


def test_traces_sharing_a_partition_are_packed_into_one_record():
    req = ExportTraceServiceRequest()
    for r in range(2):  # two resources, ten traces of two spans each
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = f"svc{r}"
        ss = rs.scope_spans.add()
        for t in range(5):
            for s_ in range(2):
                ss.spans.add(trace_id=bytes([r * 5 + t + 1]) * 16, span_id=bytes([s_ + 1]) * 8, name=f"{r}.{t}.{s_}")
    per_trace = split_traces(req.SerializeToString())
    assert len(per_trace.records) == 10
    assert all(ExportTraceServiceRequest.FromString(v).resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
               == k.decode() for k, v in per_trace.records)
    packed = split_traces(req.SerializeToString(), partitions=3)
    assert 1 < len(packed.records) <= 3
    names = []
    for key, value in packed.records:
        part = key_partition(key, 3)
        msg = ExportTraceServiceRequest.FromString(value)
        for rs in msg.resource_spans:
            svc = rs.resource.attributes[0].value.string_value
            for span in rs.scope_spans[0].spans:
                assert key_partition(span.trace_id.hex().encode(), 3) == part
                assert span.name.startswith(svc[-1])  # spans stay under their own resource
                names.append(span.name)
    assert sorted(names) == sorted(f"{r}.{t}.{s_}" for r in range(2) for t in range(5) for s_ in range(2))
    one = ExportTraceServiceRequest()
    one.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    body = one.SerializeToString()
    assert split_traces(body, partitions=3).records == [((b"\x01" * 16).hex().encode(), body)]  # forwarded as is


async def test_graceful_stop_finishes_inflight_requests_and_refuses_new_ones(kafka, unique):
    from orbitwatch.ingest.gateway import Gateway
    prefix = f"t{unique}."
    pub = GatedPublisher(KafkaPublisher(kafka.bootstrap, topic_prefix=prefix))
    gw = Gateway(pub, Auth.disabled(), grpc_port=0, http_port=0)
    await gw.start()
    body = _request((b"\x03" * 16, b"\x04" * 8)).SerializeToString()
    port = gw.grpc_port
    try:
        async with aiohttp.ClientSession() as s:
            inflight_grpc = asyncio.create_task(_raw_export(port, body))
            inflight_http = asyncio.create_task(s.post(f"http://127.0.0.1:{gw.http_port}/v1/traces", data=body,
                                                       headers={"content-type": "application/x-protobuf"}))
            while pub.waiting < 2:
                await asyncio.sleep(0.01)
            stopping = asyncio.create_task(gw.stop(grace=10))
            await asyncio.sleep(0.3)
            assert not stopping.done()
            with pytest.raises(grpc.aio.AioRpcError) as e:  # no new requests once stopping
                await _raw_export(port, body)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            pub.gate.set()
            assert await inflight_grpc == b""
            assert (await inflight_http).status == 200
            await stopping
        got = await consume(kafka.bootstrap, prefix + "otlp.traces", 2, settle=0.5)
        assert len(got) == 2  # both in-flight requests were written before the publisher closed
    finally:
        pub.gate.set()
        await gw.stop(0)


async def test_tls_on_both_listeners_and_separate_metrics_port(kafka, unique, tmp_path):
    import shutil
    import ssl
    import subprocess

    from orbitwatch.ingest.gateway import Gateway
    from tests.conftest import free_port
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    gw = Gateway(KafkaPublisher(kafka.bootstrap, topic_prefix=f"t{unique}."), Auth.disabled(), grpc_port=0,
                 http_port=0, metrics_port=free_port(), tls_cert=cert, tls_key=key)
    await gw.start()
    body = _request((b"\x05" * 16, b"\x06" * 8)).SerializeToString()
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{gw.grpc_port}", creds,
                                           options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            call = ch.unary_unary(TRACE_EXPORT, request_serializer=None, response_deserializer=None)
            assert await call(body, timeout=10) == b""
        with pytest.raises(grpc.aio.AioRpcError):  # plaintext is refused
            await _raw_export(gw.grpc_port, body)
        ctx = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as s:
            async with s.post(f"https://127.0.0.1:{gw.http_port}/v1/traces", data=body, ssl=ctx,
                              headers={"content-type": "application/x-protobuf"}) as r:
                assert r.status == 200
            async with s.get(f"http://127.0.0.1:{gw.metrics_port}/metrics") as r:
                text = await r.text()
        assert 'orbitwatch_gateway_items_accepted_total{signal="traces"} 2.0' in text
    finally:
        await gw.stop(1)
