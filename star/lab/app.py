"""The coordinator: ``create_app(settings)`` builds the FastAPI app (OpenAPI at /docs).

Nothing happens at import time. ``create_app`` opens the database and refuses to start when the
schema is not at the head revision (the message names ``star db upgrade``); the lifespan runs the
periodic reaper and the search engines of this process (``star.lab.engines``): orphaned runs
are adopted at start, and running engines stop at a phase boundary at shutdown.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import star
from device_agents.protocol import API_PREFIX
from star.config import LabSettings
from star.db import Database, require_current_schema
from star.db.errors import (
    AlreadyExistsError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    RepoError,
)
from star.db.store import ArtifactStore, StoreError
from star.lab.deps import TokenCache
from star.lab.engines import EngineSupervisor
from star.lab.reaper import Reaper
from star.lab.routes import agent, artifacts, devices, health, jobs, measurements, runs, web

log = logging.getLogger(__name__)

_STATUS: dict[type[RepoError], int] = {
    NotFoundError: status.HTTP_404_NOT_FOUND,
    AlreadyExistsError: status.HTTP_409_CONFLICT,
    ConflictError: status.HTTP_409_CONFLICT,
    ForbiddenError: status.HTTP_403_FORBIDDEN,
}


def _invalid(loc: tuple[str | int, ...], message: str) -> JSONResponse:
    detail = [{"type": "value_error", "loc": ["body", *loc], "msg": message, "input": None}]
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": detail}
    )


def _json_safe(value: Any) -> Any:
    """Make an echoed input JSON-safe: NaN and infinities become strings (else a 422 would
    crash into a 500 while rendering the very error that names them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {key: _json_safe(err.get(key)) for key in ("type", "loc", "msg", "input") if key in err}
            for err in exc.errors()
        ]
        code = status.HTTP_422_UNPROCESSABLE_CONTENT
        return JSONResponse(status_code=code, content={"detail": detail})

    @app.exception_handler(RepoError)
    async def _repo_error(_: Request, exc: RepoError) -> JSONResponse:
        if isinstance(exc, InvalidError):
            return _invalid(exc.loc, exc.message)
        code = next((c for t, c in _STATUS.items() if isinstance(exc, t)), 400)
        return JSONResponse(status_code=code, content={"detail": str(exc)})

    @app.exception_handler(StoreError)
    async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
        return _invalid(("artifact",), str(exc))

    @app.exception_handler(ValueError)
    async def _value_error(_: Request, exc: ValueError) -> JSONResponse:
        return _invalid((), str(exc))


def create_app(settings: LabSettings, *, db: Database | None = None) -> FastAPI:
    """Build the coordinator for ``settings``; raises SchemaOutOfDateError on an old schema."""
    db = db or Database(settings.db_url)
    revision = require_current_schema(db.engine)
    reaper = Reaper(db, settings.coordinator.reaper_interval_s)
    c = settings.coordinator
    engines = EngineSupervisor(db, ArtifactStore(settings.store_dir),
                               stale_after_s=c.engine_stale_s, adopt_interval_s=c.adopt_interval_s,
                               heartbeat_s=c.engine_heartbeat_s,
                               shutdown_timeout_s=c.engine_shutdown_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Few threads: every route body runs here, and 40 threads (anyio's default) fighting
        # for the GIL stretch the time each one holds the database's write lock.
        to_thread.current_default_thread_limiter().total_tokens = settings.coordinator.threads
        reaper.start()
        if c.engines:
            engines.start()
        try:
            yield
        finally:
            # engines first: they stop at a phase boundary, and their run is adopted later
            await to_thread.run_sync(engines.stop, abandon_on_cancel=True)
            reaper.stop()

    app = FastAPI(
        title="STAR lab coordinator",
        version=star.__version__,
        description="Profile jobs for device agents, artifacts, devices and measurements.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.store = ArtifactStore(settings.store_dir)
    app.state.admin_token = settings.resolve_admin_token(create=True)
    app.state.schema_revision = revision
    app.state.token_cache = TokenCache(settings.coordinator.auth_cache_s)
    app.state.reaper = reaper
    app.state.engines = engines if c.engines else None
    _install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(web.router)
    for module in (devices, agent, jobs, artifacts, runs, measurements):
        app.include_router(module.router, prefix=API_PREFIX)
    return app
