"""``/api/v1/experiments``: list/search, one experiment, its metric history, and comparisons."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from orbitwatch.api import queries as q
from orbitwatch.api.deps import get_scope, get_storage

router = APIRouter(prefix="/api/v1", tags=["experiments"])


@router.get("/experiments", summary="List experiments, newest first; search by name or id prefix")
def list_experiments(project: str | None = None, search: str | None = None, status: str | None = None,
                     tag: str | None = None, limit: int = Query(50, ge=1, le=q.MAX_LIMIT),
                     offset: int = Query(0, ge=0), storage=Depends(get_storage),
                     scope=Depends(get_scope)) -> dict[str, Any]:
    return q.list_experiments(storage, scope, project=project, search=search, status=status, tag=tag,
                              limit=limit, offset=offset)


@router.get("/experiments/compare", summary="Compare 2-20 experiments: parameters and metric summaries")
def compare(ids: list[str] = Query(..., description="repeat: ?ids=a&ids=b"), storage=Depends(get_storage),
            scope=Depends(get_scope)) -> dict[str, Any]:
    flat = [i for item in ids for i in item.split(",") if i]
    return q.compare_experiments(storage, flat, scope)


@router.get("/experiments/{experiment_id}", summary="One experiment: parameters, others, metric summaries")
def get_experiment(experiment_id: str, storage=Depends(get_storage), scope=Depends(get_scope)) -> dict[str, Any]:
    return q.get_experiment(storage, experiment_id, scope)


@router.get("/experiments/{experiment_id}/metrics", summary="Every point of the experiment's metrics")
def metric_history(experiment_id: str, name: list[str] | None = Query(None, description="repeatable"),
                   x: str = Query("step", pattern="^(step|epoch|time)$"),
                   limit: int = Query(1000, ge=1, le=q.MAX_LIMIT), offset: int = Query(0, ge=0),
                   storage=Depends(get_storage), scope=Depends(get_scope)) -> dict[str, Any]:
    return q.metric_history(storage, experiment_id, scope, names=name, x=x, limit=limit, offset=offset)
