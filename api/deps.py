"""FastAPI dependencies shared by every router: the storage handle and the caller's scope.

``app.state.storage`` is the one :class:`~orbitwatch.storage.Storage` of the process (in
``orbitwatch up`` it is shared with the processors: a chdb directory has one owner).
``app.state.auth`` is the gateway's :class:`~orbitwatch.ingest.auth.Auth` (same keys file, same
headers: ``authorization: Bearer <key>`` or ``x-api-key``); ``None`` or disabled = no auth.
"""
from __future__ import annotations

from fastapi import HTTPException, Request

from orbitwatch.api.queries import Scope
from orbitwatch.storage import Storage


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def get_scope(request: Request) -> Scope:
    """The tenant (and project, if the key is bound to one) this request may read; 401 otherwise."""
    auth = getattr(request.app.state, "auth", None)
    if auth is None or not auth.enabled:
        return Scope()
    from orbitwatch.ingest.auth import AuthError
    try:
        principal = auth.authenticate({k.lower(): v for k, v in request.headers.items()})
    except AuthError as exc:
        raise HTTPException(status_code=401, detail=str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    return Scope(tenant=principal.tenant, project=principal.project)
