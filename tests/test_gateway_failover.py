"""Kafka goes away and comes back: the gateway answers UNAVAILABLE with retry info meanwhile, the
OpenTelemetry exporter's own retry succeeds once the broker is back, and every span is in the topic
exactly once. Uses its own broker (deploy/local/kafka.sh) so the shared one is never stopped."""
from __future__ import annotations

import asyncio
import os
import shutil

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import KafkaBroker, _port_free, _wait_ready, free_port
from tests.test_gateway import _raw_export, _request, make_spans
from tests.test_gateway_support import KEY, consume, scrape, start_gateway, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture
def own_broker(tmp_path):
    if not shutil.which("java"):
        pytest.skip("java is needed to run a private Kafka broker")
    port = free_port()
    while port + 1 > 65535 or not _port_free(port + 1):
        port = free_port()
    broker = KafkaBroker(f"127.0.0.1:{port}", dict(os.environ, KAFKA_PORT=str(port),
                                                  KAFKA_DATA_DIR=str(tmp_path / "kafka")))
    broker.start()
    _wait_ready(broker.bootstrap)
    yield broker
    broker.stop()


def _span_ids(records) -> list[bytes]:
    return [s.span_id for r in records for rs in ExportTraceServiceRequest.FromString(r.value).resource_spans
            for ss in rs.scope_spans for s in ss.spans]


async def test_broker_outage_then_client_retry_succeeds_with_nothing_lost_or_duplicated(own_broker, unique):
    prefix = f"t{unique}."
    bootstrap = own_broker.bootstrap
    # retry_after 5 s: the exporter makes 6 attempts, so the broker has ~25 s to come back
    gw = await start_gateway(bootstrap, prefix, delivery_timeout_s=2.0, retry_after_s=5.0)
    endpoint, headers = f"127.0.0.1:{gw.grpc_port}", {"x-api-key": KEY}
    try:
        before = await asyncio.to_thread(make_spans, endpoint, headers, 2, 3)
        await asyncio.to_thread(own_broker.stop)

        # A raw call sees the refusal a client sees: UNAVAILABLE with a retry delay.
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await _raw_export(gw.grpc_port, _request((b"\x09" * 16, b"\x09" * 8)).SerializeToString(),
                              (("x-api-key", KEY),))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "google.rpc.retryinfo-bin" in dict(e.value.trailing_metadata())

        # The SDK exporter now exports during the outage and keeps retrying on its own ...
        during = asyncio.create_task(asyncio.to_thread(make_spans, endpoint, headers, 3, 2, 90))

        async def refused_twice() -> bool:
            m = await scrape(gw)
            return m.get(("orbitwatch_gateway_requests_total",
                          (("code", "UNAVAILABLE"), ("signal", "traces"), ("transport", "grpc"))), 0) >= 2
        await wait_for(refused_twice, timeout=20)
        assert not during.done()
        # ... until the broker is back.
        await asyncio.to_thread(own_broker.start)
        during_spans = await asyncio.wait_for(during, 60)

        sent = [s.context.span_id.to_bytes(8, "big") for s in (*before, *during_spans)]
        got = await consume(bootstrap, prefix + "otlp.traces", 5, settle=1.0)
        ids = _span_ids(got)
        assert sorted(ids) == sorted(sent)  # nothing lost, nothing duplicated (the refused raw span never written)
        m = await scrape(gw)
        assert m[("orbitwatch_gateway_items_accepted_total", (("signal", "traces"),))] == len(sent)
        assert m[("orbitwatch_gateway_kafka_errors_total", (("kind", "unavailable"),))] >= 1
    finally:
        await gw.stop(1)
