"""``/api/v1`` evaluation endpoints: feedback scores and comments on spans/traces, datasets and
evaluation runs with their comparison.

* ``POST /feedback`` — one score or ``{"scores": [...]}``; stored in ``eval_scores`` with source
  ``ui`` (override with ``source=sdk``), one row per (entity, name, annotator): several annotators
  keep separate scores, the same annotator re-scoring replaces theirs.
* ``GET /feedback?trace_id=…`` (or ``entity_id``) — every score of the item, all sources.
* ``POST|GET /comments``, ``DELETE /comments/{id}``.
* ``GET|POST /datasets``, ``GET /datasets/{name}`` (with versions), ``GET|POST /datasets/{name}/items``,
  ``POST /datasets/{name}/items/delete`` — each change makes a new version; ``?version=`` reads old ones.
* ``POST|GET /eval-runs``, ``GET /eval-runs/{id}``, ``GET /eval-runs/compare?run_ids=a,b``.
* ``GET /eval-rules``, ``PUT|DELETE /eval-rules/{name}``, ``POST /eval-rules/validate`` — online
  scoring rules kept in ClickHouse; the eval processor reloads them every few seconds
  (``ORBITWATCH_EVAL_RULES_REFRESH_S``) next to the rules file. A rule stored with a tenant's key
  only scores that tenant's spans.

Errors: 400 invalid body, 404 unknown dataset/run/comment, 401 without a valid key when auth is on.
"""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from orbitwatch.api.deps import get_scope, get_storage
from orbitwatch.processors.evals.store import DatasetItem, EvalStore, Feedback, InvalidError, NotFoundError

router = APIRouter(prefix="/api/v1", tags=["evaluation"])


def get_store(storage=Depends(get_storage)) -> EvalStore:
    return EvalStore(storage)


def _tenant(scope) -> str:
    return scope.tenant or ""


def _project(scope, requested: str | None) -> str:
    try:
        return scope.project_filter(requested) or ""
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None


def _call(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except InvalidError as exc:
        raise HTTPException(400, str(exc)) from None


# -- feedback ----------------------------------------------------------------------------------------
class FeedbackBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scores: list[Feedback] = Field(min_length=1, max_length=10_000)


@router.post("/feedback", status_code=201, summary="Attach feedback scores to spans or traces")
def post_feedback(body: Feedback | FeedbackBatch, source: Literal["ui", "sdk", "offline"] = "ui",
                  store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    items = body.scores if isinstance(body, FeedbackBatch) else [body]
    for f in items:
        f.project = _project(scope, f.project or None)
    rows = store.add_feedback(items, tenant=_tenant(scope), source=source)
    return {"written": len(rows)}


@router.get("/feedback", summary="Scores of a trace or span (every source and annotator)")
def get_feedback(trace_id: str = "", entity_id: str = "", entity_type: str = "", source: str = "",
                 project: str | None = None, store: EvalStore = Depends(get_store),
                 scope=Depends(get_scope)) -> dict[str, Any]:
    if not trace_id and not entity_id:
        raise HTTPException(400, "give trace_id or entity_id")
    items = store.scores(scope.tenant, trace_id=trace_id, entity_id=entity_id, entity_type=entity_type,
                         source=source, project=_project(scope, project) or None)
    return {"items": items}


@router.delete("/feedback", summary="Remove one annotator's ui score")
def delete_feedback(entity_id: str, name: str, entity_type: str = "trace", annotator: str = "",
                    project: str | None = None, store: EvalStore = Depends(get_store),
                    scope=Depends(get_scope)) -> dict[str, Any]:
    store.delete_feedback(_tenant(scope), _project(scope, project), entity_type, entity_id, name, annotator)
    return {"deleted": True}


# -- comments ----------------------------------------------------------------------------------------
class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entity_type: Literal["span", "trace"] = "trace"
    entity_id: str = Field(min_length=1, max_length=200)
    trace_id: str = ""
    project: str = ""
    text: str = Field(min_length=1, max_length=20_000)
    author: str = Field("", max_length=200)


@router.post("/comments", status_code=201, summary="Comment on a span or trace")
def post_comment(body: CommentIn, store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    return _call(store.add_comment, _tenant(scope), _project(scope, body.project or None), body.entity_type,
                 body.entity_id, body.text, body.author, body.trace_id)


@router.get("/comments", summary="Comments on a trace (all its spans) or on one entity")
def get_comments(trace_id: str = "", entity_id: str = "", project: str | None = None,
                 store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    if not trace_id and not entity_id:
        raise HTTPException(400, "give trace_id or entity_id")
    return {"items": store.comments(scope.tenant, trace_id=trace_id, entity_id=entity_id,
                                    project=_project(scope, project) or None)}


@router.delete("/comments/{comment_id}", summary="Delete a comment")
def delete_comment(comment_id: str, store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    _call(store.delete_comment, scope.tenant, comment_id)
    return {"deleted": True}


# -- datasets ----------------------------------------------------------------------------------------
class DatasetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    project: str = ""
    description: str = Field("", max_length=10_000)


class ItemsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: str = ""
    items: list[DatasetItem] = Field(min_length=1, max_length=100_000)
    change: str = "add items"


class ItemIds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: str = ""
    item_ids: list[str] = Field(min_length=1)


@router.get("/datasets", summary="Datasets with their latest version")
def list_datasets(project: str | None = None, store: EvalStore = Depends(get_store),
                  scope=Depends(get_scope)) -> dict[str, Any]:
    return {"items": store.list_datasets(scope.tenant, _project(scope, project) or None)}


@router.post("/datasets", status_code=201, summary="Create a dataset (no-op if it exists)")
def create_dataset(body: DatasetIn, store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    return _call(store.create_dataset, _tenant(scope), _project(scope, body.project or None), body.name,
                 body.description)


@router.get("/datasets/{name}", summary="A dataset and its version history")
def get_dataset(name: str, project: str | None = None, store: EvalStore = Depends(get_store),
                scope=Depends(get_scope)) -> dict[str, Any]:
    p = _project(scope, project)
    ds = _call(store.get_dataset, _tenant(scope), p, name)
    ds["versions"] = _call(store.versions, _tenant(scope), p, name)
    return ds


@router.get("/datasets/{name}/items", summary="Items of a dataset version (default: latest)")
def get_items(name: str, project: str | None = None, version: int | None = Query(None, ge=0),
              store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    v, items = _call(store.items, _tenant(scope), _project(scope, project), name, version)
    return {"name": name, "version": v, "items": items}


@router.post("/datasets/{name}/items", status_code=201, summary="Add items (a new version)")
def add_items(name: str, body: ItemsIn, store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    return _call(store.add_items, _tenant(scope), _project(scope, body.project or None), name, body.items,
                 body.change)


@router.post("/datasets/{name}/items/delete", summary="Remove items (a new version)")
def delete_items(name: str, body: ItemIds, store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    return _call(store.delete_items, _tenant(scope), _project(scope, body.project or None), name, body.item_ids)


# -- evaluation runs ---------------------------------------------------------------------------------
class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: dict[str, Any]
    items: list[dict[str, Any]] = Field(max_length=100_000)


@router.post("/eval-runs", status_code=201, summary="Record an evaluation run with its per-item results")
def post_run(body: RunIn, store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    run = dict(body.run)
    run["project"] = _project(scope, run.get("project") or None)
    _call(store.save_run, run, body.items, tenant=_tenant(scope))
    return _call(store.get_run, scope.tenant, run["run_id"], with_items=False)


@router.get("/eval-runs", summary="Evaluation runs, newest first")
def list_runs(project: str | None = None, dataset: str = "", name: str = "",
              limit: int = Query(100, ge=1, le=10_000), store: EvalStore = Depends(get_store),
              scope=Depends(get_scope)) -> dict[str, Any]:
    return {"items": store.runs(scope.tenant, project=_project(scope, project) or None, dataset=dataset,
                                name=name, limit=limit)}


@router.get("/eval-runs/compare", summary="Compare runs: per-metric means, deltas vs the first, per-item scores")
def compare_runs(run_ids: str = Query(..., description="comma-separated run ids; the first is the baseline"),
                 store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    ids = [r.strip() for r in run_ids.split(",") if r.strip()]
    return _call(store.compare_runs, scope.tenant, ids)


@router.get("/eval-runs/{run_id}", summary="One evaluation run with its items")
def get_run(run_id: str, store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    return _call(store.get_run, scope.tenant, run_id)


# -- online scoring rules ----------------------------------------------------------------------------
def _rule(body: dict[str, Any], name: str | None = None):
    from orbitwatch.processors.evals.rules import RulesError, validate_rule
    if name is not None:
        if body.get("name", name) != name:
            raise HTTPException(400, f"rule name {body.get('name')!r} differs from the path {name!r}")
        body = {**body, "name": name}
    if "tenant" in body:
        raise HTTPException(400, "tenant is set from the API key, not in the rule")
    try:
        return validate_rule(body)
    except RulesError as exc:
        raise HTTPException(400, str(exc)) from None


@router.get("/eval-rules", summary="Online scoring rules stored through the API")
def list_rules(store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    return {"items": store.rules(scope.tenant)}


@router.post("/eval-rules/validate", summary="Check a rule without storing it")
def validate(body: dict[str, Any]) -> dict[str, Any]:
    return {"valid": True, "rule": _rule(body).model_dump(mode="json", exclude={"tenant"})}


@router.put("/eval-rules/{name}", summary="Create or replace an online scoring rule")
def put_rule(name: str, body: dict[str, Any], store: EvalStore = Depends(get_store),
             scope=Depends(get_scope)) -> dict[str, Any]:
    rule = _rule(body, name)
    if scope.project is not None and rule.project not in (None, scope.project):
        raise HTTPException(403, f"this API key may only set rules for project {scope.project!r}")
    if scope.project is not None:
        rule = rule.model_copy(update={"project": scope.project})
    return store.put_rule(_tenant(scope), rule)


@router.delete("/eval-rules/{name}", summary="Delete an online scoring rule")
def delete_rule(name: str, store: EvalStore = Depends(get_store), scope=Depends(get_scope)) -> dict[str, Any]:
    _call(store.delete_rule, _tenant(scope), name)
    return {"deleted": True}
