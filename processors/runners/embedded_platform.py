"""``orbitwatch up`` assembled: the whole platform in one process, on one asyncio loop.

    gateway (OTLP/gRPC + OTLP/HTTP)  →  EmbeddedBus  →  EmbeddedRunner(sink, drift, evals, alerts, dead letters)
                                                                  ↓
                              query API (FastAPI/uvicorn)  ←  Storage(chdb:///<data dir>/clickhouse)

The same classes run distributed (gateway → Kafka → faust workers → ClickHouse server); only the
bus and the runner differ. A chdb directory has exactly one owner process (the CLI reaches it
through the API); inside it the processors share one client and the API has a second one, so
queries run concurrently with the sink's inserts.

Shutdown order (SIGINT/SIGTERM): receivers stop accepting and finish in-flight requests → the runner
drains every queue (emits included) and checkpoints each processor → the API stops → bus logs are
fsynced and closed → ClickHouse is closed. A restart on the same data dir keeps all data and
processor state; anything acknowledged but not yet handled is replayed from the bus log.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("orbitwatch.up")

# Short windows for the demo's model only (every other model keeps the drift defaults), so the
# demo's predictions, spread over the past hour, close their windows at once and drift is final.
DEMO_PROJECT = "orbitwatch-demo"
DEMO_MODEL = "churn-predictor"
DEMO_DRIFT_CONFIG = f"""# written by `orbitwatch up` because ORBITWATCH_DRIFT_CONFIG was not set.
# Defaults for every model; short windows for the demo model so its results are final at once.
default: {{}}
models:
  "{DEMO_PROJECT}/{DEMO_MODEL}":
    window_seconds: 600
    allowed_lateness_seconds: 30
    emit_interval_seconds: 10
"""


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from orbitwatch.errors import UserError
        raise UserError(f"cannot listen for the query API on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class EmbeddedPlatform:
    """Start/stop the all-in-one platform inside the running event loop."""

    def __init__(self, settings: Any, *, host: str = "127.0.0.1", grpc_port: int | None = 4317,
                 http_port: int | None = 4318, api_port: int | None = 8080, auth: Any = None,
                 drain_timeout: float = 30.0, max_queue_records: int = 50_000,
                 max_queue_bytes: int = 128 << 20, persist_bus: bool = True) -> None:
        self.settings = settings
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.api_port = api_port
        self.auth = auth
        self.drain_timeout = drain_timeout
        self.max_queue_records = max_queue_records
        self.max_queue_bytes = max_queue_bytes
        self.persist_bus = persist_bus
        self.storage: Any = None
        self.api_storage: Any = None
        self.bus: Any = None
        self.runner: Any = None
        self.gateway: Any = None
        self._api_server: Any = None
        self._api_task: asyncio.Task | None = None
        self.started_in: float = 0.0
        self.migrated: list[Any] = []
        self.processors: list[str] = []
        self.missing: dict[str, str] = {}

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    async def start(self) -> None:
        from orbitwatch.ingest.auth import Auth
        from orbitwatch.ingest.gateway import Gateway
        from orbitwatch.processors.registry import build_processors
        from orbitwatch.processors.runners.embedded import DeadLetterStore, EmbeddedBus, EmbeddedRunner
        from orbitwatch.storage import Storage, migrate

        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not os.environ.get("ORBITWATCH_DRIFT_CONFIG"):
            path = self.data_dir / "drift.yaml"
            if not path.exists():
                path.write_text(DEMO_DRIFT_CONFIG)
            os.environ["ORBITWATCH_DRIFT_CONFIG"] = str(path)
        self.storage = await loop.run_in_executor(None, Storage, self.settings.clickhouse_url)
        self.migrated = await loop.run_in_executor(None, migrate, self.storage)
        procs = self._build_processors(build_processors)
        procs.append(DeadLetterStore(self.storage))
        self.processors = [p.name for p in procs]
        self.bus = EmbeddedBus(self.data_dir / "bus" if self.persist_bus else None,
                               prefix=self.settings.topic_prefix, max_queue_records=self.max_queue_records,
                               max_queue_bytes=self.max_queue_bytes)
        # linger: how long a consumer waits for a fuller batch (fewer, larger ClickHouse inserts)
        linger = float(os.environ.get("ORBITWATCH_EMBEDDED_LINGER", "0.1"))
        self.runner = EmbeddedRunner(self.bus, procs, self.data_dir / "state", linger=linger)
        await self.runner.start()
        if self.auth is None:
            self.auth = Auth.disabled()
        # No Kafka message-size limit in process: a record may be as large as a request (4 MB).
        from orbitwatch.ingest.receiver import DEFAULT_MAX_MESSAGE_BYTES
        self.gateway = Gateway(self.bus, self.auth, grpc_port=self.grpc_port, http_port=self.http_port,
                               host=self.host, own_publisher=False, max_record_bytes=DEFAULT_MAX_MESSAGE_BYTES)
        await self.gateway.start()
        self.grpc_port, self.http_port = self.gateway.grpc_port, self.gateway.http_port
        if self.api_port is not None:
            await self._start_api()
        self.started_in = time.monotonic() - t0

    def _build_processors(self, build_processors: Any) -> list[Any]:
        """Every processor of the registry; one whose module exists but cannot be built yet (a part
        still being written) is reported in ``missing`` and on start-up, never silently skipped."""
        from orbitwatch.processors.registry import MODULES
        procs: list[Any] = []
        for name in MODULES:
            try:
                procs.extend(build_processors(self.settings, self.storage, only={name}))
            except Exception as exc:  # UnknownProcessorError, or a module without build()
                self.missing[name] = f"{type(exc).__name__}: {exc}"
                log.warning("processor %s is not available: %s", name, exc)
        return procs

    async def _start_api(self) -> None:
        from orbitwatch.api.app import create_app, make_server
        from orbitwatch.storage import Storage

        # The API gets its own client on the same engine: the Storage lock serialises calls per client,
        # so a query would otherwise wait behind the sink's inserts (and a long SQL query would stall
        # ingestion). chdb runs queries of two clients of one directory concurrently.
        self.api_storage = await asyncio.get_running_loop().run_in_executor(None, Storage, self.settings.clickhouse_url)
        app = create_app(self.api_storage, self.auth, status=self.status, settings=self.settings,
                         registries=(self.gateway.metrics.registry,))
        sock = _bind(self.host, self.api_port or 0)
        self.api_port = sock.getsockname()[1]
        self._api_server = make_server(app)
        self._api_task = asyncio.create_task(self._api_server.serve(sockets=[sock]), name="api")
        while not self._api_server.started:
            if self._api_task.done():
                self._api_task.result()
            await asyncio.sleep(0.01)

    def status(self) -> dict[str, Any]:
        """Live figures for ``/api/v1/status``: bus queues and processors."""
        return {"mode": "embedded", "processors": self.processors, "missing_processors": self.missing,
                "bus": self.bus.stats() if self.bus is not None else {},
                "ports": {"grpc": self.grpc_port, "http": self.http_port, "api": self.api_port}}

    async def stop(self) -> bool:
        """Graceful stop; returns False when the drain timed out (the rest is replayed next start)."""
        drained = True
        if self.gateway is not None:
            await self.gateway.stop(grace=5.0)
        if self.bus is not None:
            await self.bus.stop()
        if self.runner is not None:
            drained = await self.runner.stop(self.drain_timeout)
        if self._api_server is not None:
            self._api_server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._api_task, 10)
        if self.bus is not None:
            self.bus.close()
        for st in (self.api_storage, self.storage):
            if st is not None:
                await asyncio.get_running_loop().run_in_executor(None, st.close)
        return drained
