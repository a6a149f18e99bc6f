"""``/api/v1/traces``: list traces with filters, and one trace as a tree of spans with eval scores."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from orbitwatch.api import queries as q
from orbitwatch.api.deps import get_scope, get_storage

router = APIRouter(prefix="/api/v1", tags=["traces"])


@router.get("/traces", summary="List traces (newest first), filtered on any of their spans")
def list_traces(project: str | None = None,
                since: str | None = Query(None, description="ISO 8601, epoch seconds, relative (15m, 2h, 7d) or all; "
                                                            "bound it on big tables"),
                until: str | None = None,
                span_type: str | None = Query(None, description="llm, tool, retriever, agent, chain, guardrail, general"),
                model: str | None = None, service: str | None = None,
                status: str | None = Query(None, pattern="^(ok|error)$"),
                min_latency_ms: float | None = Query(None, ge=0),
                has_score: str | None = Query(None, description="true, or a score name such as hallucination"),
                limit: int = Query(50, ge=1, le=q.MAX_LIMIT), offset: int = Query(0, ge=0),
                storage=Depends(get_storage), scope=Depends(get_scope)) -> dict[str, Any]:
    return q.list_traces(storage, scope, project=project, since=since, until=until, span_type=span_type,
                         model=model, status=status, min_latency_ms=min_latency_ms, has_score=has_score,
                         service=service, limit=limit, offset=offset)


@router.get("/traces/{trace_id}", summary="One trace as a tree: spans with LLM columns, events and scores")
def get_trace(trace_id: str, storage=Depends(get_storage), scope=Depends(get_scope)) -> dict[str, Any]:
    return q.get_trace(storage, trace_id, scope)
