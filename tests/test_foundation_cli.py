"""Foundation: the CLI as a user runs it (subprocesses), settings validation, SDK lightness."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from orbitwatch.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_migrate_twice_then_sql_formats(orbitwatch_cli, tmp_path):
    env = {"ORBITWATCH_DATA_DIR": str(tmp_path)}
    first = orbitwatch_cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_spans" in first.stdout
    second = orbitwatch_cli("migrate", env=env)
    assert second.returncode == 0 and "0 applied now" in second.stdout
    dsn = f"chdb://{tmp_path}/clickhouse"
    assert (tmp_path / "clickhouse").is_dir()
    out = orbitwatch_cli("sql", "SELECT name FROM system.tables WHERE name IN ('spans','alerts') ORDER BY name",
                         "--clickhouse", dsn, "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"name": "alerts"}, {"name": "spans"}]
    csv = orbitwatch_cli("sql", "SELECT 1 AS a, 'x' AS b", "--clickhouse", dsn, "--format", "csv")
    assert csv.stdout.splitlines() == ["a,b", "1,x"]
    table = orbitwatch_cli("sql", "SELECT 42 AS answer", "--clickhouse", dsn)
    assert "answer" in table.stdout and "42" in table.stdout


def test_sql_refuses_writes_with_one_line(orbitwatch_cli, tmp_path):
    dsn = f"chdb://{tmp_path}/clickhouse"
    assert orbitwatch_cli("migrate", "--clickhouse", dsn).returncode == 0
    out = orbitwatch_cli("sql", "DROP TABLE spans", "--clickhouse", dsn)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("orbitwatch: refused: only read-only statements")
    assert "Traceback" not in out.stderr
    still = orbitwatch_cli("sql", "EXISTS TABLE spans", "--clickhouse", dsn, "--format", "csv")
    assert still.stdout.splitlines()[-1] == "1"


def test_bad_dsn_and_bad_setting_are_one_line(orbitwatch_cli, tmp_path):
    out = orbitwatch_cli("sql", "SELECT 1", "--clickhouse", "mysql://x")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "invalid clickhouse_url (--clickhouse / ORBITWATCH_CLICKHOUSE_URL)" in out.stderr
    out = orbitwatch_cli("topics", "create", env={"ORBITWATCH_KAFKA_BOOTSTRAP": "nohostport"})
    assert out.returncode == 2 and "invalid kafka_bootstrap (--kafka" in out.stderr


def test_settings_defaults_and_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("ORBITWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ORBITWATCH_CLICKHOUSE_URL", raising=False)
    s = load_settings()
    assert s.clickhouse_url == f"chdb://{tmp_path / 'clickhouse'}"
    monkeypatch.setenv("ORBITWATCH_PROJECT", "from-env")
    assert load_settings().project == "from-env"
    assert load_settings(project="from-flag").project == "from-flag"
    with pytest.raises(ConfigError, match="endpoint"):
        load_settings(endpoint="ftp://x")


def test_sdk_install_stays_light():
    """`pip install orbitwatch` must not pull Kafka, faust or ClickHouse; importing the SDK must not load them."""
    deps = " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]).lower()
    for heavy in ("aiokafka", "faust", "clickhouse", "chdb", "grpcio-tools", "numpy", "scipy"):
        assert heavy not in deps
    code = ("import sys, orbitwatch\n"
            "from orbitwatch import Experiment, track, MonitoredModel\n"
            "bad = [m for m in ('aiokafka', 'faust', 'clickhouse_connect', 'chdb') if m in sys.modules]\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
