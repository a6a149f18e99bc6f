"""The alert processor driven by the real runners: the embedded runner (in-process bus) and the
faust worker over Kafka (`orbitwatch worker --only alerts` in a subprocess)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from orbitwatch.config import load_settings
from orbitwatch.processors.registry import build_processors
from orbitwatch.processors.runners.embedded import EmbeddedBus, EmbeddedRunner

from tests.test_alerts import drift
from tests.webhook_receiver import WebhookReceiver

FAST = "route: {group_interval: 0s}\n"  # extends the built-ins; resolves go out at once


async def test_embedded_runner_drives_alerts(storage, tmp_path, monkeypatch):
    rules = tmp_path / "rules.yaml"
    rules.write_text(FAST)
    with WebhookReceiver() as hook:
        settings = load_settings(alert_webhook=hook.url, alert_rules=str(rules))
        (proc,) = build_processors(settings, storage, only={"alerts"})
        bus = EmbeddedBus(None)
        runner = EmbeddedRunner(bus, [proc], None, tick_interval=0.1)
        await runner.start()
        await bus.publish("orbitwatch.drift", [(b"shop/churn/v3", drift(0, True).value, {})])
        got = await asyncio.to_thread(hook.wait_for, 1, 20)
        await bus.publish("orbitwatch.drift", [(b"shop/churn/v3", drift(1, False).value, {})])
        got = await asyncio.to_thread(hook.wait_for, 2, 20)
        assert [g.json["status"] for g in got] == ["firing", "resolved"]
        assert await runner.stop() is True
        proc.close()
        bus.close()


@pytest.mark.kafka
def test_faust_worker_over_kafka_delivers(kafka, tmp_path, unique):
    from aiokafka import AIOKafkaProducer
    rules = tmp_path / "rules.yaml"
    rules.write_text(FAST)
    prefix = f"t{unique}."
    with WebhookReceiver() as hook:
        env = {**os.environ, "ORBITWATCH_ALERT_RULES": str(rules), "ORBITWATCH_TOPIC_PREFIX": prefix,
               "ORBITWATCH_ALERT_WEBHOOK": hook.url}
        worker = subprocess.Popen(
            [sys.executable, "-m", "orbitwatch.cli", "worker", "--only", "alerts", "--kafka", kafka.bootstrap,
             "--clickhouse", f"chdb://{tmp_path / 'ch'}", "--data-dir", str(tmp_path / "data"),
             "--batch-seconds", "0.2"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            async def produce(*msgs) -> None:
                p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
                await p.start()
                try:
                    for m in msgs:
                        await p.send_and_wait(f"{prefix}orbitwatch.drift", m.value, key=b"shop/churn/v3")
                finally:
                    await p.stop()

            deadline = time.time() + 120
            while not hook.requests and time.time() < deadline and worker.poll() is None:
                try:  # repeated until the worker has created the topics and joined: same window
                    asyncio.run(produce(drift(0, True)))
                except Exception:
                    time.sleep(1)
                    continue
                hook.wait_for(1, timeout=5)
            assert worker.poll() is None, worker.stderr.read()[-3000:]
            assert hook.requests, "no notification from the worker within 120 s"
            asyncio.run(produce(drift(1, False)))
            got = hook.wait_for(2, timeout=60)
            assert [g.json["status"] for g in got] == ["firing", "resolved"]
            assert got[0].json["alerts"][0]["labels"]["feature"] == "age"
            time.sleep(1)
            assert len(hook.requests) == 2
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
