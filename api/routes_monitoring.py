"""``/api/v1/drift``, ``/api/v1/scores`` and ``/api/v1/alerts``: what the monitoring processors wrote."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from orbitwatch.api import queries as q
from orbitwatch.api.deps import get_scope, get_storage

router = APIRouter(prefix="/api/v1", tags=["monitoring"])


@router.get("/drift", summary="Monitored models with drift results and their drifted-feature counts")
def drift_models(project: str | None = None, storage=Depends(get_storage),
                 scope=Depends(get_scope)) -> dict[str, Any]:
    return {"items": q.drift_models(storage, scope, project=project)}


@router.get("/drift/{model}", summary="Drift timeline of one model (per window, feature and metric)")
def drift_timeline(model: str, project: str | None = None, version: str | None = None,
                   feature: str | None = None, metric: str | None = None, since: str | None = None,
                   final_only: bool = False, limit: int = Query(1000, ge=1, le=q.MAX_LIMIT),
                   offset: int = Query(0, ge=0), storage=Depends(get_storage),
                   scope=Depends(get_scope)) -> dict[str, Any]:
    return q.drift_timeline(storage, model, scope, project=project, version=version, feature=feature,
                            metric=metric, since=since, final_only=final_only, limit=limit, offset=offset)


@router.get("/scores", summary="Eval scores (online, sdk, ui, offline), newest first, with per-name means")
def scores(project: str | None = None, name: str | None = None, source: str | None = None,
           trace_id: str | None = None, since: str | None = None,
           limit: int = Query(100, ge=1, le=q.MAX_LIMIT), offset: int = Query(0, ge=0),
           storage=Depends(get_storage), scope=Depends(get_scope)) -> dict[str, Any]:
    return q.list_scores(storage, scope, project=project, name=name, source=source, trace_id=trace_id,
                         since=since, limit=limit, offset=offset)


@router.get("/alerts", summary="Alerts: current state per alert, or every transition with history=true")
def alerts(status: str | None = Query(None, pattern="^(firing|resolved)$"), rule: str | None = None,
           since: str | None = None, history: bool = False, limit: int = Query(100, ge=1, le=q.MAX_LIMIT),
           offset: int = Query(0, ge=0), storage=Depends(get_storage), scope=Depends(get_scope)) -> dict[str, Any]:
    return q.list_alerts(storage, scope, status=status, rule=rule, since=since, history=history, limit=limit,
                         offset=offset)
