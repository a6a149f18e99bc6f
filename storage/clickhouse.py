"""One module over a clickhouse-connect ``Client``, whatever the backend.

``chdb:///dir`` runs the ClickHouse engine in this process (one process per directory);
``http(s)://user:pass@host:8123/db`` talks to a server. Both run the same SQL and inserts.
chdb calls block, so asyncio code should call these methods through ``run_in_executor``.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from orbitwatch.config import validate_clickhouse_dsn


class StorageError(RuntimeError):
    """ClickHouse is unreachable, the DSN is malformed, or a statement failed."""


class ReadOnlyQueryError(StorageError):
    """A statement given to a read-only entry point (``orbitwatch sql``, the SQL API) would write."""


# Top-level AST nodes of statements that only read (ClickHouse's own parser decides, see is_read_only).
_READ_ONLY_AST = ("SelectWithUnionQuery", "SelectQuery", "ShowTables", "ShowColumns", "DescribeQuery",
                  "ExistsTableQuery", "ExistsDatabaseQuery", "ExistsViewQuery", "ShowCreateTableQuery",
                  "ShowDatabases", "Explain", "ShowProcesslist")


def connect(dsn: str) -> Any:
    """Open a clickhouse-connect client for ``dsn``; StorageError with a clear message on failure."""
    try:
        validate_clickhouse_dsn(dsn)
    except ValueError as exc:
        raise StorageError(f"malformed ClickHouse DSN: {exc}") from None
    import clickhouse_connect  # server extra; imported late so the SDK never needs it

    parts = urlsplit(dsn)
    try:
        if parts.scheme == "chdb":
            from pathlib import Path
            path = Path(parts.netloc + parts.path if parts.netloc else parts.path)
            path.mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(dsn=f"chdb://{path}")
        return clickhouse_connect.get_client(dsn=dsn, connect_timeout=5, send_receive_timeout=60)
    except Exception as exc:  # driver raises many types; the user needs one clear line
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "EmbeddedServer" in msg or "BAD_ARGUMENTS" in msg:
            msg += " (is another orbitwatch process using this data dir? use its API, e.g. --url)"
        raise StorageError(f"cannot connect to ClickHouse at {redact(dsn)}: {msg}") from None


def redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password:
        return dsn.replace(f":{parts.password}@", ":***@")
    return dsn


class Storage:
    """Thin, typed helpers over a clickhouse-connect client: columnar inserts and queries.

    Calls are serialised with a lock: the chdb backend runs one statement at a time anyway,
    and a server client is cheap to serialise compared with the batches we send it.
    """

    def __init__(self, dsn: str, client: Any | None = None) -> None:
        self.dsn = dsn
        self.client = client if client is not None else connect(dsn)
        self.is_embedded = urlsplit(dsn).scheme == "chdb"
        self._lock = threading.RLock()

    # -- writes ---------------------------------------------------------------------------------
    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                    dedup_token: str | None = None) -> int:
        """Insert row tuples (in ``columns`` order). ``dedup_token`` makes a replayed batch a no-op."""
        if not rows:
            return 0
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        with self._lock:
            try:
                self.client.insert(table, rows, column_names=list(columns), settings=settings)
            except Exception as exc:
                raise StorageError(f"insert into {table} failed: {_first_line(exc)}") from exc
        return len(rows)

    def insert_columns(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]],
                       dedup_token: str | None = None) -> int:
        """Columnar insert: ``data[i]`` is the list of values of ``columns[i]``; cheaper for big batches."""
        if not data or not len(data[0]):
            return 0
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        with self._lock:
            try:
                self.client.insert(table, data, column_names=list(columns), column_oriented=True,
                                   settings=settings)
            except Exception as exc:
                raise StorageError(f"insert into {table} failed: {_first_line(exc)}") from exc
        return len(data[0])

    def insert_models(self, table: str, records: Iterable[Any]) -> int:
        """Insert pydantic records whose field names are the table's columns."""
        recs = list(records)
        if not recs:
            return 0
        columns = list(type(recs[0]).model_fields)
        rows = [[getattr(r, c) for c in columns] for r in recs]
        return self.insert_rows(table, columns, rows)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            try:
                return self.client.command(sql, parameters=parameters)
            except Exception as exc:
                raise StorageError(_first_line(exc)) from exc

    # -- reads ----------------------------------------------------------------------------------
    def query(self, sql: str, parameters: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Run a query; returns (column names, rows)."""
        with self._lock:
            try:
                res = self.client.query(sql, parameters=parameters, settings=settings)
            except Exception as exc:
                raise StorageError(_first_line(exc)) from exc
        return list(res.column_names), [tuple(r) for r in res.result_rows]

    def query_dicts(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cols, rows = self.query(sql, parameters)
        return [dict(zip(cols, r)) for r in rows]

    def scalar(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        _, rows = self.query(sql, parameters)
        return rows[0][0] if rows else None

    def is_read_only(self, sql: str) -> bool:
        """Ask ClickHouse's own parser: only SELECT/SHOW/DESCRIBE/EXISTS/EXPLAIN pass.

        We do not rely on the ``readonly`` setting alone because the embedded engine keeps a
        setting changed by one query for the whole session.
        """
        stripped = sql.strip().rstrip(";").strip()
        if not stripped or ";" in stripped.replace("';'", ""):
            return False
        try:
            _, rows = self.query(f"EXPLAIN AST {stripped}")
        except StorageError:
            return False
        first = rows[0][0].strip() if rows else ""
        return first.split(" ")[0] in _READ_ONLY_AST

    def query_read_only(self, sql: str, max_rows: int = 10_000, max_seconds: int = 30
                        ) -> tuple[list[str], list[tuple]]:
        """Run a user's query only if it cannot write; limits rows and time."""
        if not self.is_read_only(sql):
            raise ReadOnlyQueryError(
                "refused: only read-only statements (SELECT, WITH, SHOW, DESCRIBE, EXISTS, EXPLAIN) are allowed")
        settings: dict[str, Any] = {"max_result_rows": max_rows, "result_overflow_mode": "break",
                                    "max_execution_time": max_seconds}
        if not self.is_embedded:
            settings["readonly"] = 2  # a server enforces it per query as well
        return self.query(sql.strip().rstrip(";"), settings=settings)

    def ping(self) -> bool:
        try:
            return self.scalar("SELECT 1") == 1
        except StorageError:
            return False

    def close(self) -> None:
        with self._lock:
            try:
                self.client.close()
            except Exception:
                pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:500]
    return type(exc).__name__
