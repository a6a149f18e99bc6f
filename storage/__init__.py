"""Storage: one clickhouse-connect Client for both the embedded engine (chdb) and a server."""
from orbitwatch.storage.clickhouse import ReadOnlyQueryError, Storage, StorageError, connect
from orbitwatch.storage.migrate import migrate

__all__ = ["Storage", "StorageError", "ReadOnlyQueryError", "connect", "migrate"]
