"""``orbitwatch gateway``: the OTLP ingest gateway (gRPC :4317, HTTP :4318) in front of Kafka."""
from __future__ import annotations

import argparse

HELP = "run the OTLP ingest gateway: OTLP/gRPC + OTLP/HTTP in, Kafka out (API-key auth, back-pressure)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.cli import add_common
    add_common(p, "kafka_bootstrap")
    p.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    p.add_argument("--grpc-port", type=int, default=4317, help="OTLP/gRPC port (default 4317; -1 disables)")
    p.add_argument("--http-port", type=int, default=4318,
                   help="OTLP/HTTP port, also serving /metrics, /healthz, /readyz (default 4318; -1 disables)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="also serve /metrics on this port (it is always on the HTTP port)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--keys", metavar="FILE", help="API keys file, YAML/JSON {keys: [{key, tenant, project}]} "
                                                     "(or ORBITWATCH_API_KEYS / ORBITWATCH_API_KEYS_FILE)")
    auth.add_argument("--no-auth", action="store_true", help="accept requests without a key (tenant 'default'); "
                                                             "local development only")
    p.add_argument("--max-message-bytes", type=int, default=4 * 1024 * 1024,
                   help="largest request accepted, after gzip decoding (default 4 MiB)")
    p.add_argument("--max-inflight-bytes", type=int, default=64 * 1024 * 1024,
                   help="request bytes awaiting Kafka before answering RESOURCE_EXHAUSTED/429 (default 64 MiB)")
    p.add_argument("--tls-cert", help="PEM certificate for both listeners (with --tls-key)")
    p.add_argument("--tls-key", help="PEM private key for both listeners")
    p.add_argument("--compression", choices=("lz4", "zstd", "gzip", "none"), default="lz4")
    p.add_argument("--linger-ms", type=int, default=5, help="Kafka producer linger (default 5)")
    p.add_argument("--delivery-timeout", type=float, default=5.0,
                   help="seconds to wait for Kafka acks before answering UNAVAILABLE/503 (default 5)")
    p.add_argument("--retry-after", type=float, default=1.0, help="retry delay told to clients (default 1 s)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds in-flight requests get on shutdown")
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    p.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from orbitwatch.cli import settings_from
    from orbitwatch.errors import UserError
    from orbitwatch.ingest import jsonlog
    from orbitwatch.ingest.auth import Auth
    from orbitwatch.ingest.gateway import Gateway
    from orbitwatch.ingest.publisher import KafkaPublisher

    settings = settings_from(args)
    jsonlog.configure(args.log_level, args.log_format)
    if args.no_auth:
        auth = Auth.disabled()
    elif args.keys:
        auth = Auth.from_file(args.keys)
    else:
        auth = Auth.from_env()
        if auth is None:
            raise UserError("no API keys configured: pass --keys FILE, set ORBITWATCH_API_KEYS, "
                            "or use --no-auth for local development")
    publisher = KafkaPublisher(settings.kafka_bootstrap, topic_prefix=settings.topic_prefix,
                               compression=args.compression, linger_ms=args.linger_ms,
                               delivery_timeout_s=args.delivery_timeout, retry_after_s=args.retry_after)
    gw = Gateway(publisher, auth, host=args.host,
                 grpc_port=None if args.grpc_port < 0 else args.grpc_port,
                 http_port=None if args.http_port < 0 else args.http_port, metrics_port=args.metrics_port,
                 max_message_bytes=args.max_message_bytes, max_inflight_bytes=args.max_inflight_bytes,
                 retry_after_s=args.retry_after, tls_cert=args.tls_cert, tls_key=args.tls_key)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await gw.start()
        print(f"orbitwatch gateway: OTLP/gRPC {args.host}:{gw.grpc_port}  OTLP/HTTP {args.host}:{gw.http_port}"
              f"  Kafka {settings.kafka_bootstrap}  auth {'on' if auth.enabled else 'OFF'}", flush=True)
        await stop.wait()
        await gw.stop(args.grace)

    asyncio.run(main())
    return 0
