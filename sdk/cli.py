"""The ``orbitwatch`` command. Each subcommand lives in ``orbitwatch/commands/<name>.py`` with
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; heavy imports happen inside
``run`` so ``orbitwatch --help`` is fast and works with the SDK-only install.

Errors a user can cause (bad setting, unreachable ClickHouse, refused SQL) print one line to
stderr and exit 2; no tracebacks.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# In data-flow order: run it, send to it, store, query.
COMMANDS = ("up", "demo", "gateway", "worker", "api", "migrate", "topics", "sql",
            "traces", "experiments", "drift", "alerts", "evals", "datasets")


def add_common(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add the shared settings flags (``--data-dir``, ``--clickhouse``, ``--kafka``, ...)."""
    flags = {
        "data_dir": ("--data-dir", "data directory (ORBITWATCH_DATA_DIR, default ~/.orbitwatch)"),
        "clickhouse_url": ("--clickhouse", "ClickHouse DSN: chdb:///dir or http(s)://user:pass@host:8123/db "
                                           "(ORBITWATCH_CLICKHOUSE_URL)"),
        "kafka_bootstrap": ("--kafka", "Kafka bootstrap HOST:PORT (ORBITWATCH_KAFKA_BOOTSTRAP)"),
        "endpoint": ("--endpoint", "OTLP/gRPC endpoint of the gateway (ORBITWATCH_ENDPOINT)"),
        "api_key": ("--api-key", "API key (ORBITWATCH_API_KEY)"),
        "project": ("--project", "project name (ORBITWATCH_PROJECT)"),
        "api_url": ("--url", "query API of a running instance (ORBITWATCH_API_URL)"),
        "alert_webhook": ("--alert-webhook", "Alertmanager-format webhook URL (ORBITWATCH_ALERT_WEBHOOK)"),
        "alert_rules": ("--alert-rules", "alert rules YAML file, replaces or extends the built-in rules "
                                         "(ORBITWATCH_ALERT_RULES)"),
    }
    for name in names:
        flag, help_ = flags[name]
        parser.add_argument(flag, dest=name, default=None, help=help_)


def settings_from(args: argparse.Namespace):
    """Settings from the environment, overridden by whichever common flags the command has."""
    from orbitwatch.config import Settings, load_settings
    return load_settings(**{k: getattr(args, k) for k in Settings.model_fields if hasattr(args, k)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orbitwatch", description="Observability for ML and LLM applications.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"orbitwatch.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"orbitwatch.commands.{name}":
                continue
            raise
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from orbitwatch.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ConfigError as exc:
        print(f"orbitwatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Errors the user can cause are raised as these types and shown as one line.
        from orbitwatch.errors import UserError
        if isinstance(exc, UserError) or type(exc).__name__ in ("StorageError", "ReadOnlyQueryError"):
            print(f"orbitwatch: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
