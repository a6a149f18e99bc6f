"""``POST /api/v1/sql``: read-only SQL for ``orbitwatch sql`` and notebooks.

Only statements ClickHouse's own parser classifies as reads pass (``Storage.query_read_only``), with
row and time limits; on a server the ``readonly`` setting is enforced per query as well. Raw SQL
cannot be scoped to a tenant, so with authentication on it is open only to the tenants listed in
``ORBITWATCH_SQL_TENANTS`` (comma separated; default none → 403).
"""
from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from orbitwatch.api.deps import get_scope, get_storage
from orbitwatch.api.queries import jsonable

router = APIRouter(prefix="/api/v1", tags=["sql"])


class SqlRequest(BaseModel):
    query: str = Field(..., min_length=1, max_length=100_000)
    max_rows: int = Field(10_000, ge=1, le=1_000_000)
    max_seconds: int = Field(30, ge=1, le=300)


class SqlResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False  # more rows existed than max_rows


@router.post("/sql", response_model=SqlResult, summary="Run a read-only query (SELECT/SHOW/DESCRIBE/EXPLAIN)")
def sql(body: SqlRequest, storage=Depends(get_storage), scope=Depends(get_scope)) -> SqlResult:
    if scope.tenant is not None:
        allowed = {t.strip() for t in os.environ.get("ORBITWATCH_SQL_TENANTS", "").split(",") if t.strip()}
        if scope.tenant not in allowed or scope.project is not None:
            raise HTTPException(403, "raw SQL cannot be scoped to a tenant; it is open only to the tenants in "
                                     "ORBITWATCH_SQL_TENANTS (keys not bound to a project)")
    cols, rows = storage.query_read_only(body.query, max_rows=body.max_rows, max_seconds=body.max_seconds)
    # ClickHouse's result_overflow_mode=break stops at a block boundary, so cut exactly here.
    return SqlResult(columns=cols, rows=[[jsonable(v) for v in r] for r in rows[:body.max_rows]],
                     truncated=len(rows) > body.max_rows)
