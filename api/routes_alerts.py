"""``/api/v1/alerts/...``: active alerts, alert rules (validate / upload / show) and notifications.

The alert history itself (``GET /api/v1/alerts``) is in routes_monitoring. Here:

- ``GET  /api/v1/alerts/active`` — pending and firing alerts as the alert processor sees them now;
- ``GET  /api/v1/alerts/rules`` — the effective rules (built-ins + file or uploaded document);
- ``POST /api/v1/alerts/rules/validate`` — check a YAML rules document (body: the YAML, or JSON
  ``{"yaml": "..."}``); 200 ``{"valid": true, ...}`` or 422 with ``errors: [{line, field, message}]``;
- ``PUT  /api/v1/alerts/rules`` — validate and store; the processor switches within ~5 s;
- ``DELETE /api/v1/alerts/rules`` — go back to the rules file / built-ins;
- ``GET  /api/v1/alerts/notifications`` — the delivery outbox (pending, delivered, failed).
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from orbitwatch.api.deps import get_scope, get_storage
from orbitwatch.processors.alerts.defaults import effective_config
from orbitwatch.processors.alerts.rules import RuleError, RulesFile, load_rules_file, parse_rules

router = APIRouter(prefix="/api/v1", tags=["alerts"])
PROCESSOR = "alerts"
MAX_RULES_BYTES = 1_000_000


async def _rules_text(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_RULES_BYTES:
        raise HTTPException(413, f"rules document larger than {MAX_RULES_BYTES} bytes")
    ctype = request.headers.get("content-type", "")
    text = body.decode("utf-8", errors="replace")
    if "json" in ctype:
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise HTTPException(400, f"body is not JSON: {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("yaml"), str):
            raise HTTPException(400, 'JSON body must be {"yaml": "<rules document>"}')
        return obj["yaml"]
    return text


def _invalid(exc: RuleError) -> JSONResponse:
    return JSONResponse({"valid": False, "errors": exc.errors, "detail": str(exc)}, status_code=422)


def _summary(doc: RulesFile) -> dict[str, Any]:
    return {"valid": True, "defaults": doc.defaults, "rules": [r.name for r in doc.rules],
            "receivers": [r.name for r in doc.receivers]}


def _public_config(doc: RulesFile | None, webhook: str) -> dict[str, Any]:
    cfg = effective_config(webhook, doc)
    return {"rules": [r.model_dump(mode="json", by_alias=True) for r in cfg.rules.values()],
            # URLs of Slack/webhook receivers are secrets in themselves: only name and type
            "receivers": [{"name": r.name, "type": r.type} for r in cfg.receivers.values()],
            "route": cfg.route.model_dump(mode="json"), "routes": [r.model_dump(mode="json", by_alias=True)
                                                                   for r in cfg.routes]}


def _uploaded(storage: Any) -> dict[str, Any] | None:
    rows = storage.query_dicts(
        "SELECT version, yaml, uploaded_at, uploaded_by FROM alert_rules FINAL WHERE processor = {p:String} "
        "ORDER BY version DESC LIMIT 1", {"p": PROCESSOR})
    return rows[0] if rows and rows[0]["yaml"].strip() else None


def _require_admin(scope: Any) -> None:
    if getattr(scope, "project", None) is not None:
        raise HTTPException(403, "alert rules are global: use an API key that is not bound to a project")


@router.get("/alerts/active", summary="Pending and firing alerts (current state of the alert processor)")
def active(status: str | None = Query(None, pattern="^(pending|firing)$"), rule: str | None = None,
           project: str | None = None, storage=Depends(get_storage), scope=Depends(get_scope)) -> dict[str, Any]:
    rows = storage.query("SELECT payload FROM alert_state FINAL WHERE processor = {p:String} AND kind = 'instance' "
                         "AND is_deleted = 0 AND JSONExtractString(payload, 'status') != 'inactive'",
                         {"p": PROCESSOR})[1]
    items = []
    project = scope.project or project
    for (payload,) in rows:
        inst = json.loads(payload)
        labels = inst["labels"]
        if inst["status"] == "inactive" or (status and inst["status"] != status) or (rule and inst["rule"] != rule):
            continue
        if project and labels.get("project") != project:
            continue
        if scope.tenant is not None and labels.get("tenant", "") != scope.tenant:
            continue
        items.append({k: inst[k] for k in ("rule", "fingerprint", "status", "labels", "annotations", "value",
                                           "threshold", "samples", "streak")}
                     | {"active_since": _iso(inst["active_since"]), "starts_at": _iso(inst["starts_at"])})
    items.sort(key=lambda i: (i["status"] != "firing", i["rule"], i["fingerprint"]))
    return {"items": items}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


@router.get("/alerts/rules", summary="The effective alert rules and where they come from")
def get_rules(request: Request, storage=Depends(get_storage)) -> dict[str, Any]:
    settings = getattr(request.app.state, "settings", None)
    webhook = getattr(settings, "alert_webhook", "") or os.environ.get("ORBITWATCH_ALERT_WEBHOOK", "")
    up = _uploaded(storage)
    if up is not None:
        doc, source = parse_rules(up["yaml"], "uploaded rules"), f"uploaded v{up['version']}"
    else:
        path = getattr(settings, "alert_rules", "") or os.environ.get("ORBITWATCH_ALERT_RULES", "")
        try:
            doc, source = (load_rules_file(path), path) if path else (None, "built-in defaults")
        except RuleError as exc:
            return _invalid(exc)
    return {"source": source, "yaml": up["yaml"] if up else None, **_public_config(doc, webhook)}


@router.post("/alerts/rules/validate", summary="Validate a YAML rules document (422 lists line/field errors)")
async def validate_rules(request: Request) -> Any:
    text = await _rules_text(request)
    try:
        return _summary(parse_rules(text, "rules"))
    except RuleError as exc:
        return _invalid(exc)


@router.put("/alerts/rules", summary="Upload a rules document; the alert processor applies it within seconds")
async def put_rules(request: Request, storage=Depends(get_storage), scope=Depends(get_scope)) -> Any:
    _require_admin(scope)
    text = await _rules_text(request)
    try:
        doc = parse_rules(text, "rules")
    except RuleError as exc:
        return _invalid(exc)
    version = await run_in_threadpool(_store, storage, text, request)
    return {**_summary(doc), "version": version}


@router.delete("/alerts/rules", summary="Drop uploaded rules: back to the rules file / built-in defaults")
async def delete_rules(request: Request, storage=Depends(get_storage), scope=Depends(get_scope)) -> Any:
    _require_admin(scope)
    version = await run_in_threadpool(_store, storage, "", request)
    return {"version": version, "source": "rules file / built-in defaults"}


def _store(storage: Any, text: str, request: Request) -> int:
    version = time.time_ns()
    who = request.client.host if request.client else ""
    storage.insert_rows("alert_rules", ["processor", "version", "yaml", "uploaded_at", "uploaded_by"],
                        [[PROCESSOR, version, text, datetime.now(timezone.utc), who]])
    return version


@router.get("/alerts/notifications", summary="Notification outbox: what was sent where, retries and failures")
def notifications(status: str | None = Query(None, pattern="^(pending|delivered|failed)$"),
                  receiver: str | None = None, include_payload: bool = False,
                  limit: int = Query(100, ge=1, le=10_000), offset: int = Query(0, ge=0),
                  storage=Depends(get_storage), scope=Depends(get_scope)) -> dict[str, Any]:
    _require_admin(scope)
    where, params = ["processor = {p:String}"], {"p": PROCESSOR, "limit": limit, "offset": offset}
    if status:
        where.append("status = {status:String}")
        params["status"] = status
    if receiver:
        where.append("receiver = {receiver:String}")
        params["receiver"] = receiver
    cols = "notification_id, receiver, group_key, status, attempts, last_http_status, last_error, created_at, updated_at"
    if include_payload:
        cols += ", payload"
    rows = storage.query_dicts(f"SELECT {cols} FROM alert_outbox FINAL WHERE {' AND '.join(where)} "
                               "ORDER BY created_at DESC LIMIT {limit:UInt32} OFFSET {offset:UInt32}", params)
    for row in rows:
        for k in ("created_at", "updated_at"):
            v = row[k]
            row[k] = (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).isoformat()
        if include_payload:
            row["payload"] = json.loads(row["payload"])
    return {"items": rows, "limit": limit, "offset": offset,
            "next_offset": offset + limit if len(rows) == limit else None}
