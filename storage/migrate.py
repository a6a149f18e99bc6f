"""Ordered, idempotent ClickHouse migrations (``orbitwatch migrate``).

Migrations are the ``NNNN_name.sql`` files in ``orbitwatch/schemas/migrations``, applied in
number order. Applied versions are recorded in ``schema_migrations``; running twice is a no-op,
and every statement is ``IF NOT EXISTS`` so a half-applied migration can be re-run safely.

Placeholders make the same files serve a cluster: ``{on_cluster}`` becomes ``ON CLUSTER name``
and ``{replicated}`` becomes ``Replicated`` (engine ``ReplicatedReplacingMergeTree`` with the
server's default replica path) when ``cluster`` is given; ``{ttl_days}`` sets data retention.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from orbitwatch.storage.clickhouse import Storage

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, cluster: str = "", ttl_days: int = 30) -> list[str]:
        text = "\n".join(l for l in self.sql.splitlines() if not l.strip().startswith("--"))
        text = (text.replace("{on_cluster}", f"ON CLUSTER {cluster}" if cluster else "")
                    .replace("{replicated}", "Replicated" if cluster else "")
                    .replace("{ttl_days}", str(int(ttl_days))))
        return [s.strip() for s in text.split(";\n") if s.strip().rstrip(";").strip()]


def available() -> list[Migration]:
    folder = resources.files("orbitwatch.schemas") / "migrations"
    found = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {versions}")
    return found


def applied(storage: Storage) -> set[int]:
    _, rows = storage.query("SELECT version FROM schema_migrations FINAL")
    return {int(r[0]) for r in rows}


def migrate(storage: Storage, cluster: str = "", ttl_days: int = 30) -> list[Migration]:
    """Apply pending migrations; returns those applied now (empty when up to date)."""
    on_cluster = f"ON CLUSTER {cluster}" if cluster else ""
    engine = "ReplicatedReplacingMergeTree" if cluster else "ReplacingMergeTree"
    storage.command(
        f"CREATE TABLE IF NOT EXISTS schema_migrations {on_cluster} (version UInt32, name String, "
        f"applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = {engine}(applied_at) ORDER BY version")
    done = applied(storage)
    now_applied = []
    for mig in available():
        if mig.version in done:
            continue
        for stmt in mig.statements(cluster, ttl_days):
            storage.command(stmt)
        storage.insert_rows("schema_migrations", ["version", "name"], [[mig.version, mig.name]])
        now_applied.append(mig)
    return now_applied
