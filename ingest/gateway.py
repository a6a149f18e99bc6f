"""The ingest gateway: OTLP/gRPC + OTLP/HTTP listeners in front of a :class:`Publisher`.

Usable from any running asyncio loop (the CLI, the embedded all-in-one mode, tests)::

    gw = Gateway(KafkaPublisher("127.0.0.1:9092"), Auth.disabled(), grpc_port=4317, http_port=4318)
    await gw.start()
    ...
    await gw.stop(grace=10)

``stop`` is the graceful shutdown: both listeners stop accepting, in-flight requests get ``grace``
seconds (gRPC; HTTP handlers get up to 10 s) to finish (each still answers only after its records are acknowledged), then the publisher
flushes. Port 0 picks a free port; the bound ports are in ``grpc_port`` / ``http_port`` after start.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import grpc
from aiohttp import web
from prometheus_client import CollectorRegistry

from orbitwatch.errors import UserError
from orbitwatch.ingest import grpc_server, http_server
from orbitwatch.ingest.auth import Auth
from orbitwatch.ingest.metrics import GatewayMetrics
from orbitwatch.ingest.publisher import Publisher
from orbitwatch.ingest.receiver import DEFAULT_MAX_INFLIGHT_BYTES, DEFAULT_MAX_MESSAGE_BYTES, Receiver
from orbitwatch.ingest.split import DEFAULT_MAX_RECORD_BYTES

log = logging.getLogger("orbitwatch.ingest.gateway")


class Gateway:
    def __init__(self, publisher: Publisher, auth: Auth, *, grpc_port: int | None = 4317,
                 http_port: int | None = 4318, host: str = "127.0.0.1", metrics_port: int | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, retry_after_s: float = 1.0,
                 tls_cert: str | Path | None = None, tls_key: str | Path | None = None,
                 registry: CollectorRegistry | None = None, own_publisher: bool = True) -> None:
        """``grpc_port``/``http_port`` None disables that listener. ``own_publisher``: start and
        stop the publisher with the gateway (False when the caller shares it with other parts)."""
        if (tls_cert is None) != (tls_key is None):
            raise UserError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        self.publisher = publisher
        self.auth = auth
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.tls_cert = Path(tls_cert) if tls_cert else None
        self.tls_key = Path(tls_key) if tls_key else None
        self.own_publisher = own_publisher
        self.metrics = GatewayMetrics(registry)
        self.receiver = Receiver(publisher, auth, self.metrics, max_message_bytes=max_message_bytes,
                                 max_inflight_bytes=max_inflight_bytes, max_record_bytes=max_record_bytes,
                                 retry_after_s=retry_after_s)
        self._grpc: grpc.aio.Server | None = None
        self._runners: list[web.AppRunner] = []
        self._stopping = False

    async def ready(self) -> bool:
        return not self._stopping and await self.publisher.ready()

    def _tls(self) -> tuple[bytes, bytes] | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        try:
            return self.tls_key.read_bytes(), self.tls_cert.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read TLS certificate/key: {exc}") from None

    async def start(self) -> None:
        tls = self._tls()
        if self.own_publisher:
            await self.publisher.start()
        try:
            if self.grpc_port is not None:
                limit = self.receiver.max_message_bytes
                # grpc's own limit sits above ours so our check (clear message, counted) usually answers first.
                server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2 * limit + 1024),
                                                  ("grpc.so_reuseport", 0)],
                                         maximum_concurrent_rpcs=None)
                server.add_generic_rpc_handlers(grpc_server.handlers(self.receiver))
                addr = f"{self.host}:{self.grpc_port}"
                port = (server.add_secure_port(addr, grpc.ssl_server_credentials([tls])) if tls
                        else server.add_insecure_port(addr))
                if port == 0:
                    raise UserError(f"cannot listen for OTLP/gRPC on {addr}")
                await server.start()
                self._grpc, self.grpc_port = server, port
            ssl_ctx = None
            if tls:
                ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ssl_ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key))
            if self.http_port is not None:
                self.http_port = await self._serve(http_server.build_app(self.receiver, self.ready),
                                                   self.http_port, ssl_ctx)
            if self.metrics_port is not None:
                self.metrics_port = await self._serve(http_server.metrics_app(self.metrics.registry),
                                                      self.metrics_port, None)
        except OSError as exc:
            await self.stop(0)
            raise UserError(f"cannot listen on {self.host}: {exc.strerror or exc}") from None
        except BaseException:
            await self.stop(0)
            raise
        log.info("gateway listening", extra={"grpc_port": self.grpc_port, "http_port": self.http_port,
                                             "metrics_port": self.metrics_port, "tls": bool(tls),
                                             "auth": self.auth.enabled})

    async def _serve(self, app: web.Application, port: int, ssl_ctx: ssl.SSLContext | None) -> int:
        # auto_decompress off: http_server inflates gzip itself, bounded by max_message_bytes
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0, auto_decompress=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.host, port, ssl_context=ssl_ctx)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # the bound port (port 0 → a free one)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish for up to ``grace`` s, then flush the publisher."""
        self._stopping = True
        tasks = []
        if self._grpc is not None:
            tasks.append(self._grpc.stop(grace))
        for runner in self._runners:
            tasks.append(runner.cleanup())
        await asyncio.gather(*tasks, return_exceptions=True)
        self._grpc, self._runners = None, []
        if self.own_publisher:
            await self.publisher.stop()
        log.info("gateway stopped")
