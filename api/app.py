"""The query API (FastAPI; OpenAPI at ``/docs``), served by ``orbitwatch up`` and ``orbitwatch api``.

Routers: traces, experiments, monitoring (drift, scores, alerts), read-only SQL, plus the
routers of other parts when installed (``routes_evals``: feedback, datasets; ``routes_alerts``:
alert rules). Every list endpoint pages with ``limit``/``offset`` and answers
``{"items", "limit", "offset", "next_offset"}``.

Errors a caller can cause get a status code and a one-line ``detail``: 400 bad filter or refused SQL,
401 missing/unknown key, 403 out of scope, 404 unknown id, 503 ClickHouse unavailable.
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from orbitwatch.api import queries as q
from orbitwatch.storage import ReadOnlyQueryError, Storage, StorageError

log = logging.getLogger("orbitwatch.api")

# Routers written by other parts, included when their module exists.
OPTIONAL_ROUTERS = ("orbitwatch.api.routes_evals", "orbitwatch.api.routes_alerts")


def create_app(storage: Storage, auth: Any = None, *, status: Callable[[], dict[str, Any]] | None = None,
               settings: Any = None, registries: tuple[Any, ...] = ()) -> FastAPI:
    """Build the app over ``storage``; ``auth`` is the gateway's Auth (None = no auth);
    ``status`` adds live figures (bus queues, processors) to ``/api/v1/status``; ``/metrics`` serves
    the default Prometheus registry plus ``registries`` (the embedded gateway's own)."""
    from orbitwatch import __version__
    from orbitwatch.api import routes_experiments, routes_monitoring, routes_sql, routes_traces

    app = FastAPI(title="Orbitwatch query API", version=__version__,
                  description="Traces, experiments, drift, eval scores and alerts stored by Orbitwatch.")
    app.state.storage = storage
    app.state.auth = auth
    app.state.settings = settings
    for mod in (routes_traces, routes_experiments, routes_monitoring, routes_sql):
        app.include_router(mod.router)
    app.state.optional_routers = []
    for name in OPTIONAL_ROUTERS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        router = getattr(mod, "router", None)
        if router is not None:
            app.include_router(router)
            app.state.optional_routers.append(name)

    @app.exception_handler(q.QueryInputError)
    async def _bad_input(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(ReadOnlyQueryError)
    async def _refused(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(q.NotFound)
    async def _not_found(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StorageError)
    async def _storage(_: Request, exc: Exception) -> JSONResponse:
        msg = str(exc)
        # A statement ClickHouse rejects (bad SQL in /sql) is the caller's error, not an outage.
        code = 400 if any(s in msg for s in ("SYNTAX_ERROR", "UNKNOWN_", "Syntax error", "TYPE_MISMATCH",
                                              "ILLEGAL_", "NO_SUCH")) else 503
        return JSONResponse({"detail": msg}, status_code=code)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> PlainTextResponse:
        ok = storage.ping()
        return PlainTextResponse("ready" if ok else "clickhouse unavailable", status_code=200 if ok else 503)

    @app.get("/api/v1/status", tags=["status"], summary="Rows per table and live pipeline figures")
    def status_() -> dict[str, Any]:
        out: dict[str, Any] = {"version": __version__, "tables": q.table_counts(storage)}
        if status is not None:
            out.update(status())
        return out

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        text = generate_latest().decode() + "".join(generate_latest(r).decode() for r in registries)
        return PlainTextResponse(text, media_type=CONTENT_TYPE_LATEST)

    return app


def make_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8080) -> Any:
    """A uvicorn server that leaves SIGINT/SIGTERM to its owner (``up`` must drain the pipeline
    before the API stops; stock uvicorn re-raises the signal after shutdown, killing the process)."""
    import contextlib

    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[override]
            yield

    return _Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False))
