"""The embedded bus and runner: bounded queues, at-least-once delivery, checkpoints, replay after a
hard stop, and the dead-letter path. Processors here are small real classes, not mocks."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from orbitwatch.processors.base import Emit, Message, RetryableError
from orbitwatch.processors.runners.embedded import DeadLetterStore, EmbeddedBus, EmbeddedRunner, PublishOverloaded
from orbitwatch.processors.runners.embedded_log import LogRecord, TopicLog, decode_frames, encode_frame


class Doubler:
    """Reads numbers from 'in', emits 2n on 'out', and keeps a running sum in its state."""

    name = "doubler"
    topics = ("in",)

    def __init__(self) -> None:
        self.total = 0
        self.seen: list[int] = []
        self.ticks = 0

    def handle(self, batch: list[Message]) -> list[Emit]:
        out = []
        for m in batch:
            n = int(m.value)
            if n < 0:
                raise ValueError(f"negative {n}")
            self.total += n
            self.seen.append(n)
            out.append(Emit(topic="out", value=str(2 * n).encode(), key=m.key))
        return out

    def tick(self, now: float) -> list[Emit]:
        self.ticks += 1
        return []

    def snapshot(self) -> dict[str, Any]:
        return {"total": self.total}

    def restore(self, state: dict[str, Any]) -> None:
        self.total = state["total"]


class Collector:
    name = "collector"
    topics = ("out", "orbitwatch.dlq")

    def __init__(self, fail_first: int = 0) -> None:
        self.got: list[tuple[str, bytes, dict]] = []
        self.fail_first = fail_first

    def handle(self, batch: list[Message]) -> list[Emit]:
        if self.fail_first:
            self.fail_first -= 1
            raise RetryableError("storage away")
        self.got.extend((m.topic, m.value, m.headers) for m in batch)
        return []

    def tick(self, now: float) -> list[Emit]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass


async def _until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_log_frames_round_trip_and_torn_tail(tmp_path):
    recs = [LogRecord(value=b"v%d" % i, key=None if i % 2 else b"k", headers={"h": b"x" * i}, timestamp_ms=i)
            for i in range(5)]
    data = b"".join(encode_frame(r) for r in recs)
    back, valid = decode_frames(data + encode_frame(recs[0])[:-3])  # a torn last frame
    assert valid == len(data) and back == recs

    lg = TopicLog(tmp_path / "t", segment_bytes=40)
    for r in recs:
        lg.append([r])
    lg.close()
    with open(sorted((tmp_path / "t").glob("*.log"))[-1], "ab") as f:
        f.write(b"\x00\x00\x01")  # crash mid-write
    lg = TopicLog(tmp_path / "t", segment_bytes=40)
    assert lg.next_offset == 5
    assert [o for o, _ in lg.read_from(2)] == [2, 3, 4]
    lg.truncate_before(4)
    assert [o for o, _ in lg.read_from(0)] == [4] and lg.next_offset == 5


async def test_full_queue_refuses_external_publish():
    bus = EmbeddedBus(None, max_queue_records=3)
    bus.subscribe("c", ["in"])
    bus.open()
    await bus.publish("in", [(b"k", b"1", {}), (b"k", b"2", [("a", b"b")])])
    with pytest.raises(PublishOverloaded):
        await bus.publish("in", [(None, b"3", None), (None, b"4", None)])
    got = bus.poll("c", ["in"], 10)
    assert [(o, r.value, r.headers) for _, o, r in got] == [(0, b"1", {}), (1, b"2", {"a": b"b"})]
    bus.advance("c", {"in": 2})
    await bus.publish("in", [(None, b"3", None), (None, b"4", None)])  # room again
    # a topic nobody consumes is not retained (counted instead)
    await bus.publish("nobody", [(None, b"x", None)])
    assert "nobody" not in bus.stats() or bus.stats()["nobody"]["queued"] == 0


async def test_runner_routes_emits_ticks_and_retries(tmp_path):
    bus = EmbeddedBus(tmp_path / "bus")
    d, c = Doubler(), Collector(fail_first=2)
    runner = EmbeddedRunner(bus, [d, c], tmp_path / "state", tick_interval=0.1, checkpoint_interval=0.1)
    await runner.start()
    await bus.publish("in", [(b"k", b"%d" % i, {}) for i in range(1, 101)])
    await bus.publish("prefix-less-ok", [])
    await _until(lambda: len(c.got) == 100)
    assert sorted(int(v) for _, v, _ in c.got) == [2 * i for i in range(1, 101)]
    assert d.total == 5050 and d.ticks >= 1
    assert await runner.stop() is True
    cp = json.loads((tmp_path / "state" / "doubler.json").read_text())
    assert cp["state"] == {"total": 5050} and cp["offsets"] == {"in": 100}
    bus.close()


async def test_bad_message_goes_to_dlq_and_stream_continues(tmp_path):
    bus = EmbeddedBus(None)
    d, c = Doubler(), Collector()
    runner = EmbeddedRunner(bus, [d, c], None, tick_interval=0.1)
    await runner.start()
    await bus.publish("in", [(None, b"1", {}), (None, b"-5", {}), (None, b"3", {})])
    await _until(lambda: len(c.got) == 3)
    dlq = [(v, h) for t, v, h in c.got if t == "orbitwatch.dlq"]
    assert len(dlq) == 1 and dlq[0][0] == b"-5"
    assert b"negative -5" in dlq[0][1]["orbitwatch-error"] and dlq[0][1]["orbitwatch-source"] == b"in/0/1"
    assert sorted(int(v) for t, v, _ in c.got if t == "out") == [2, 6]
    await runner.stop()


async def test_restart_after_hard_stop_replays_uncommitted_and_restores_state(tmp_path):
    # First life: handle everything, checkpoint, then accept more records that are never handled
    # (as if the process was killed right after acknowledging them).
    bus = EmbeddedBus(tmp_path / "bus")
    d = Doubler()
    runner = EmbeddedRunner(bus, [d], tmp_path / "state", checkpoint_interval=0.05)
    await runner.start()
    await bus.publish("in", [(None, b"%d" % i, {}) for i in (1, 2, 3)])
    await _until(lambda: d.total == 6)
    await runner.drain()
    await asyncio.sleep(0.2)  # a checkpoint happens
    for drv in runner.drivers:
        drv.task.cancel()
    await asyncio.sleep(0.05)
    await bus.publish("in", [(None, b"10", {}), (None, b"20", {})])  # acknowledged, not handled
    bus.close()  # "kill": no drain, no final checkpoint

    bus2 = EmbeddedBus(tmp_path / "bus")
    d2 = Doubler()
    runner2 = EmbeddedRunner(bus2, [d2], tmp_path / "state")
    replayed = await runner2.start()
    assert replayed["in"] >= 2
    await _until(lambda: d2.total == 36)
    assert d2.seen[-2:] == [10, 20] and 1 not in d2.seen  # resumed from the checkpoint, not from zero
    await runner2.stop()
    bus2.close()


async def test_dead_letter_store_writes_table(storage):
    bus = EmbeddedBus(None)
    runner = EmbeddedRunner(bus, [Doubler(), DeadLetterStore(storage)], None)
    await runner.start()
    await bus.publish("in", [(b"key1", b"not a number", {})])
    await _until(lambda: storage.scalar("SELECT count() FROM dead_letters") == 1)
    err, src, key = storage.query("SELECT error, source, key FROM dead_letters")[1][0]
    assert "doubler: ValueError" in err and src == "in/0/0" and key == "key1"
    await runner.stop()


def _otlp_body(n_traces: int) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    ss = rs.scope_spans.add()
    for i in range(n_traces):
        s = ss.spans.add()
        s.trace_id = (i + 1).to_bytes(16, "big")
        s.span_id = (i + 1).to_bytes(8, "big")
        s.name = f"span-{i}"
        s.start_time_unix_nano = 1
        s.end_time_unix_nano = 2
    return req.SerializeToString()


async def test_gateway_answers_429_and_resource_exhausted_when_the_bus_is_full():
    """Back-pressure end to end: a full in-process queue becomes HTTP 429 / gRPC RESOURCE_EXHAUSTED
    with a retry hint, and what was accepted before is all still queued (nothing dropped)."""
    import grpc
    import httpx

    from orbitwatch.ingest.auth import Auth
    from orbitwatch.ingest.gateway import Gateway

    bus = EmbeddedBus(None, max_queue_records=1)
    bus.subscribe("slow-sink", ["otlp.traces"])  # a consumer that never reads
    bus.open()
    gw = Gateway(bus, Auth.disabled(), grpc_port=0, http_port=0, own_publisher=False)
    await gw.start()
    try:
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{gw.http_port}/v1/traces"
            hdr = {"content-type": "application/x-protobuf"}
            ok = await http.post(url, content=_otlp_body(2), headers=hdr)  # one partition -> one record
            assert ok.status_code == 200
            full = await http.post(url, content=_otlp_body(1), headers=hdr)
            assert full.status_code == 429 and full.headers.get("retry-after")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            export = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                    request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await export(_otlp_body(1), timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert bus.pending("slow-sink", ["otlp.traces"]) == 1
    finally:
        await gw.stop(0)


class Closer(Doubler):
    """Has in-flight work at shutdown: close(grace) returns one last emit."""

    name = "closer"

    def close(self, grace: float) -> list[Emit]:
        assert grace > 0
        return [Emit(topic="out", value=b"999")]


async def test_close_emits_survive_the_stop_and_reach_consumers_after_restart(tmp_path):
    bus = EmbeddedBus(tmp_path / "bus")
    c = Collector()
    runner = EmbeddedRunner(bus, [Closer(), c], tmp_path / "state")
    await runner.start()
    await bus.publish("in", [(None, b"1", {})])
    await _until(lambda: len(c.got) == 1)
    await runner.stop()
    bus.close()
    bus2 = EmbeddedBus(tmp_path / "bus")
    c2 = Collector()
    closer = Closer()
    runner2 = EmbeddedRunner(bus2, [closer, c2], tmp_path / "state")
    await runner2.start()
    await _until(lambda: [v for _, v, _ in c2.got] == [b"999"])
    assert closer.seen == []  # its input was committed before the stop: not handled again
    await runner2.stop()
    bus2.close()


async def test_unreadable_checkpoint_is_moved_aside_and_the_log_replayed(tmp_path):
    bus = EmbeddedBus(tmp_path / "bus")
    d = Doubler()
    runner = EmbeddedRunner(bus, [d], tmp_path / "state")
    await runner.start()
    await bus.publish("in", [(None, b"5", {})])
    await _until(lambda: d.total == 5)
    await runner.stop()
    bus.close()
    (tmp_path / "state" / "doubler.json").write_text("{not json")
    # the committed segment is gone, so only what the log still holds can be replayed: nothing here
    bus2 = EmbeddedBus(tmp_path / "bus")
    d2 = Doubler()
    runner2 = EmbeddedRunner(bus2, [d2], tmp_path / "state")
    await runner2.start()
    assert list((tmp_path / "state").glob("doubler.json.corrupt-*"))
    await bus2.publish("in", [(None, b"7", {})])
    await _until(lambda: d2.total == 7)  # started empty, still consuming
    await runner2.stop()
    bus2.close()
