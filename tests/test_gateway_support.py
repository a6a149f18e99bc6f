"""Shared pieces of the gateway tests: start a gateway on free ports, read a topic back, scrape metrics."""
from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from orbitwatch.ingest.auth import Auth
from orbitwatch.ingest.gateway import Gateway
from orbitwatch.ingest.publisher import KafkaPublisher

KEY = "test-key-acme-0001"
KEYS = {"keys": [{"key": KEY, "tenant": "acme", "project": "checkout"},
                 {"key": "test-key-other-0002", "tenant": "other"}]}


async def start_gateway(bootstrap: str, prefix: str, auth: Auth | None = None, **kw) -> Gateway:
    pub_kw = {k: kw.pop(k) for k in ("delivery_timeout_s", "connect_timeout_s") if k in kw}
    publisher = KafkaPublisher(bootstrap, topic_prefix=prefix, retry_after_s=kw.get("retry_after_s", 1.0), **pub_kw)
    gw = Gateway(publisher, auth or Auth.from_mapping(KEYS), grpc_port=0, http_port=0, **kw)
    await gw.start()
    return gw


async def consume(bootstrap: str, topic: str, count: int, timeout: float = 20.0, settle: float = 0.0) -> list:
    """Every record of ``topic`` from the beginning, until ``count`` arrived (then ``settle`` s more,
    to catch unexpected extras) or ``timeout``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = await consumer._client._wait_on_metadata(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: list = []
        deadline = time.monotonic() + timeout
        extra_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                got.extend(recs)
            if len(got) >= count and extra_until is None:
                extra_until = time.monotonic() + settle
            if extra_until is not None and time.monotonic() >= extra_until:
                break
        return got
    finally:
        await consumer.stop()


async def scrape(gw: Gateway) -> dict[tuple[str, tuple], float]:
    """The gateway's /metrics as {(sample name, sorted labels): value}."""
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{gw.http_port}/metrics") as r:
            text = await r.text()
    return {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
            for fam in text_string_to_metric_families(text) for smp in fam.samples}


async def wait_for(pred, timeout: float = 10.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
