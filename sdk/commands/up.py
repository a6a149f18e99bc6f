"""``orbitwatch up``: the whole platform in one process (see orbitwatch.processors.runners.embedded_platform)."""
from __future__ import annotations

import argparse
import sys

HELP = "run everything in one process: OTLP receivers, in-process bus, processors, embedded ClickHouse, query API"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orbitwatch.cli import add_common
    add_common(p, "data_dir", "alert_webhook", "alert_rules")
    p.add_argument("--host", default="127.0.0.1", help="address of all listeners (default 127.0.0.1)")
    p.add_argument("--grpc-port", type=int, default=4317, help="OTLP/gRPC port (default 4317; 0 = any free port)")
    p.add_argument("--http-port", type=int, default=4318, help="OTLP/HTTP port (default 4318; 0 = any free port)")
    p.add_argument("--api-port", type=int, default=8080, help="query API port (default 8080; 0 = any free port)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--no-auth", action="store_true", help="accept data and queries without API keys")
    auth.add_argument("--keys", metavar="FILE", help="API keys file (as for `orbitwatch gateway`); "
                                                    "also ORBITWATCH_API_KEYS_FILE / ORBITWATCH_API_KEYS")
    p.add_argument("--demo", action="store_true", help="send the demo telemetry to this instance, print a summary "
                                                       "of what landed, and keep serving")
    p.add_argument("--no-online-evals", action="store_true",
                   help="do not score every LLM span with the local RAG metrics by default "
                        "(same as ORBITWATCH_EVAL_DEFAULT=off; a rules file ORBITWATCH_EVAL_RULES still applies)")
    p.add_argument("--drain-timeout", type=float, default=30.0,
                   help="seconds to drain queues on Ctrl-C/SIGTERM before stopping (default 30)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def _auth(args: argparse.Namespace):
    """--keys / env keys → API keys required; --no-auth → none. With neither, a loopback-only
    instance runs without auth (the newcomer's ``make up``) and anything else must choose."""
    from orbitwatch.errors import UserError
    from orbitwatch.ingest.auth import Auth

    if args.no_auth:
        return Auth.disabled(), "off (--no-auth)"
    if args.keys:
        return Auth.from_file(args.keys), f"API keys from {args.keys}"
    env = Auth.from_env()
    if env is not None:
        return env, "API keys from the environment"
    if args.host in ("127.0.0.1", "localhost", "::1"):
        return Auth.disabled(), "off (loopback only, no keys configured; give --keys FILE to require them)"
    raise UserError(f"listening on {args.host} needs API keys (--keys FILE) or an explicit --no-auth")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from orbitwatch.cli import settings_from

    settings = settings_from(args)
    auth, auth_note = _auth(args)
    if args.no_online_evals:
        import os
        os.environ["ORBITWATCH_EVAL_DEFAULT"] = "off"  # read by the eval processor's build()
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("uvicorn", "aiohttp.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return asyncio.run(_serve(settings, args, auth, auth_note))


async def _serve(settings, args: argparse.Namespace, auth, auth_note: str) -> int:
    import asyncio
    import signal

    from orbitwatch.processors.runners.embedded_platform import EmbeddedPlatform
    from orbitwatch.storage.clickhouse import redact

    platform = EmbeddedPlatform(settings, host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
                                api_port=args.api_port, auth=auth, drain_timeout=args.drain_timeout)
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            print(f"\norbitwatch up: {signal.Signals(signum).name}: draining queues "
                  f"(up to {args.drain_timeout:.0f} s; again to stop at once)", file=sys.stderr, flush=True)
            stop.set()
        else:  # what is acknowledged but unhandled stays in the bus log and is replayed on start
            print("orbitwatch up: stopping without draining; the rest is replayed on the next start",
                  file=sys.stderr, flush=True)
            platform.drain_timeout = 0
            if platform.runner is not None:
                platform.runner.abandon_retries = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await platform.start()
    except BaseException:
        await platform.stop()
        raise
    host = args.host
    replayed = sum(platform.runner.replayed.values())
    print(f"orbitwatch up: ready in {platform.started_in:.1f} s\n"
          f"  OTLP/gRPC   {host}:{platform.grpc_port}   (ORBITWATCH_ENDPOINT=http://{host}:{platform.grpc_port})\n"
          f"  OTLP/HTTP   http://{host}:{platform.http_port}/v1/traces\n"
          f"  query API   http://{host}:{platform.api_port}/api/v1   (OpenAPI: http://{host}:{platform.api_port}/docs)\n"
          f"  data        {settings.data_dir}  ({redact(settings.clickhouse_url)})\n"
          f"  processors  {', '.join(platform.processors)}"
          + (f"   (NOT available: {', '.join(platform.missing)})" if platform.missing else "") + "\n"
          f"  auth        {auth_note}\n"
          f"  migrations  {len(platform.migrated)} applied now"
          + (f"; replaying {replayed} records acknowledged before the last stop" if replayed else ""),
          flush=True)
    demo_task = None
    if args.demo and auth.enabled and not settings.api_key:
        print("orbitwatch up: --demo skipped: API keys are required here, set ORBITWATCH_API_KEY to one of them",
              file=sys.stderr, flush=True)
    elif args.demo:
        demo_task = asyncio.create_task(_run_demo(settings, host, platform))
    await stop.wait()
    if demo_task is not None and not demo_task.done():
        demo_task.cancel()
    drained = await platform.stop()
    print("orbitwatch up: stopped" + ("" if drained else " (drain timed out; the rest is replayed on the next start)"),
          file=sys.stderr, flush=True)
    return 0


async def _run_demo(settings, host: str, platform) -> None:
    """Run ``orbitwatch demo`` against this instance in a subprocess (its own SDK process, exactly
    what a user's program would be) and let it print its summary on our stdout."""
    import asyncio
    import os

    env = dict(os.environ)
    cmd = [sys.executable, "-m", "orbitwatch.cli", "demo", "--endpoint", f"http://{host}:{platform.grpc_port}",
           "--url", f"http://{host}:{platform.api_port}"]
    proc = await asyncio.create_subprocess_exec(*cmd, env=env)
    try:
        rc = await proc.wait()
    except asyncio.CancelledError:
        proc.terminate()
        raise
    if rc == 0:
        print("orbitwatch up: demo done; still serving — Ctrl-C to stop", flush=True)
    else:
        print(f"orbitwatch up: the demo exited with {rc}; still serving — Ctrl-C to stop", file=sys.stderr,
              flush=True)
