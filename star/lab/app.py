"""The coordinator: ``create_app(settings)`` builds the FastAPI app (OpenAPI at /docs).

Nothing happens at import time. ``create_app`` opens the database and refuses to start when the
schema is not at the head revision (the message names ``star db upgrade``); the lifespan runs the
periodic reaper and the search engines of this process (``star.lab.engines``): orphaned runs
are adopted at start, and running engines stop at a phase boundary at shutdown.

The API refuses what it cannot store: every id, figure and string is bounded by its schema
(``device_agents.protocol`` / ``schemas``) and refused with a 422 naming the field; a body larger
than ``coordinator.max_body_bytes`` is a 413 (``star.lab.limits``). /docs works offline
(``star.lab.openapi``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

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
from star.lab.limits import BodyLimit
from star.lab.openapi import install_docs, operation_id
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


_UNPARSEABLE = "There was an error parsing the body"  # FastAPI's words for an undecodable body
_ECHO_CHARS = 200  # an echoed string is cut here: a 10 MB field is not sent back
_ECHO_ITEMS = 20  # an echoed list or object is cut here: so are a million samples


def _json_safe(value: Any, depth: int = 0, chars: int = _ECHO_CHARS) -> Any:
    """Make an echoed input JSON-safe and short: NaN and infinities become strings, a lone
    surrogate is escaped (else a 422 would crash into a 500 while rendering the very error
    that names it), long strings, lists and objects are cut and say how long they were."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
        if len(text) > chars:
            return f"{text[:chars]}... ({len(value)} characters)"
        return text
    if isinstance(value, dict | list | tuple) and depth > 4:
        return f"({type(value).__name__} of {len(value)})"
    if isinstance(value, dict):
        items = list(value.items())
        out = {_json_safe(str(k)): _json_safe(v, depth + 1) for k, v in items[:_ECHO_ITEMS]}
        if len(items) > _ECHO_ITEMS:
            out["..."] = f"({len(items)} entries)"
        return out
    if isinstance(value, list | tuple):
        out_list = [_json_safe(v, depth + 1) for v in value[:_ECHO_ITEMS]]
        if len(value) > _ECHO_ITEMS:
            out_list.append(f"... ({len(value)} items)")
        return out_list
    if value is None or isinstance(value, int | float | bool):
        return value
    return _json_safe(str(value))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {key: _json_safe(err.get(key), chars=2000 if key == "msg" else _ECHO_CHARS)
             for key in ("type", "loc", "msg", "input") if key in err}
            for err in exc.errors()[:100]
        ]
        code = status.HTTP_422_UNPROCESSABLE_CONTENT
        return JSONResponse(status_code=code, content={"detail": detail})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers a body it cannot decode (not UTF-8) with a bare 400; it is a refused
        # field like any other: 422 naming the body.
        if exc.status_code == 400 and exc.detail == _UNPARSEABLE:
            return _invalid((), "the body is not JSON in UTF-8")
        return await http_exception_handler(request, exc)

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
        return _invalid((), _json_safe(str(exc)))

    # Last lines of defence: a value the schemas let through that the database cannot hold
    # (SQLite: an integer past 2^63; PostgreSQL: past int4, a string over its column). The
    # schemas bound every field, so reaching these is a missing bound: still not a 500.
    @app.exception_handler(OverflowError)
    async def _overflow(_: Request, exc: OverflowError) -> JSONResponse:
        return _invalid((), f"a value is too large to store: {_json_safe(str(exc))}")

    @app.exception_handler(DataError)
    async def _data_error(_: Request, exc: DataError) -> JSONResponse:
        log.warning("the database refused a value the schemas accepted: %s", exc.orig)
        return _invalid((), f"a value cannot be stored: {_json_safe(str(exc.orig))}")


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
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from an installed package, not a CDN (install_docs)
        redoc_url=None,
        openapi_tags=_TAGS,
        generate_unique_id_function=operation_id,
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
    install_docs(app)
    upload = f"{API_PREFIX}/artifacts"

    def streams_to_disk(scope: Scope) -> bool:  # the upload enforces max_artifact_bytes
        return scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == upload

    app.add_middleware(BodyLimit, max_bytes=c.max_body_bytes, exempt=streams_to_disk)
    return app


_DESCRIPTION = """Profile jobs for device agents, artifacts, devices, search runs and
measurements.

Authentication: `Authorization: Bearer <token>`, the operator's admin token or a device's token
(from `POST /api/v1/devices`). Every refusal names its field (422, `loc`); figures must be
finite and within physical bounds (see each field); request bodies are limited to
`coordinator.max_body_bytes` (413)."""

_TAGS = [
    {"name": "agent", "description": "Device agents (device token): lease a job, heartbeat it, "
                                     "report its result or failure."},
    {"name": "devices", "description": "Register, list and retire devices (operator)."},
    {"name": "jobs", "description": "Queue, list and cancel profile jobs (operator)."},
    {"name": "artifacts", "description": "Model files: upload (operator), download (either)."},
    {"name": "runs", "description": "Search runs: launch, stop, resume, frontier, candidates."},
    {"name": "measurements", "description": "Measurements, read-only (operator)."},
    {"name": "health", "description": "Liveness and schema revision (no token)."},
]
