"""Shared fixtures: a real Kafka broker and a fresh embedded ClickHouse per test.

Kafka comes from, in order: ``ORBITWATCH_KAFKA_BOOTSTRAP`` if set; testcontainers if a Docker
engine answers; otherwise ``deploy/local/kafka.sh`` (Apache Kafka jars from Maven Central) on a
free port. Under CI (``CI`` set) a broker that cannot be had fails the run instead of skipping.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _docker_answers() -> bool:
    try:
        import docker
        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


class KafkaBroker:
    """A running broker; ``stop()``/``start()`` let failure tests take it away and bring it back."""

    def __init__(self, bootstrap: str, env: dict[str, str] | None = None) -> None:
        self.bootstrap = bootstrap
        self._env = env

    @property
    def controllable(self) -> bool:
        return self._env is not None

    def _script(self, action: str) -> str:
        assert self._env is not None, "this broker is not ours to stop/start"
        out = subprocess.run([str(ROOT / "deploy/local/kafka.sh"), action], env=self._env,
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"kafka.sh {action} failed: {out.stderr[-2000:]}")
        return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""

    def stop(self) -> None:
        self._script("stop")

    def start(self) -> None:
        self._script("start")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory) -> KafkaBroker:
    if os.environ.get("ORBITWATCH_KAFKA_BOOTSTRAP"):
        yield KafkaBroker(os.environ["ORBITWATCH_KAFKA_BOOTSTRAP"])
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer
        with KafkaContainer().with_kraft() as kc:
            yield KafkaBroker(kc.get_bootstrap_server())
        return
    port = free_port()
    while port + 1 > 65535 or not _port_free(port + 1):
        port = free_port()
    env = dict(os.environ, KAFKA_PORT=str(port), KAFKA_DATA_DIR=str(tmp_path_factory.mktemp("kafka")))
    broker = KafkaBroker(f"127.0.0.1:{port}", env)
    try:
        broker.start()
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Kafka broker: {exc}")
    _wait_ready(broker.bootstrap)
    yield broker
    broker.stop()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _wait_ready(bootstrap: str, timeout: float = 60) -> None:
    """The port answers before the broker serves metadata; wait for a real metadata answer."""
    import asyncio
    import time

    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> None:
        deadline = time.monotonic() + timeout
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
            try:
                await admin.start()
                await admin.list_topics()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
            finally:
                await admin.close()

    asyncio.run(probe())


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names, projects and consumer groups."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def clickhouse_dsn(tmp_path) -> str:
    return f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture
def storage(clickhouse_dsn):
    """A migrated embedded ClickHouse in a temp dir (the real engine, via chdb)."""
    from orbitwatch.storage import Storage, migrate
    st = Storage(clickhouse_dsn)
    migrate(st)
    yield st
    st.close()


@pytest.fixture
def orbitwatch_cli():
    """Run the CLI as a user would (a subprocess); returns CompletedProcess."""
    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
        return subprocess.run([sys.executable, "-m", "orbitwatch.cli", *args], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, timeout=timeout)
    return run
