"""Request dependencies, as ``Annotated`` aliases: ``SessionDep``, ``AdminDep``, ``AgentDep``.

Tokens come as ``Authorization: Bearer <token>``. The admin token is compared in constant time;
device tokens are looked up by their sha256 (``repo.authenticate``). The session dependency ends
(commits) before the response is sent, so an agent never acts on an answer that is not stored.
"""

from __future__ import annotations

import functools
import hmac
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from device_agents.protocol import MAX_ID, MAX_OFFSET
from star.config import LabSettings
from star.db import Database, repo
from star.db.snapshots import DeviceSnapshot
from star.db.store import ArtifactStore
from star.lab.openapi import route_errors

bearer = HTTPBearer(auto_error=False, description="the admin token or a device token")


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_settings(request: Request) -> LabSettings:
    return request.app.state.settings


def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


async def get_session(db: Annotated[Database, Depends(get_db)]) -> AsyncIterator[Session]:
    """The request's session; the transaction is committed by ``TxRoute`` in the route's own
    threadpool call, and this scope rolls back (on error) and closes.

    Why not commit here: a sync generator would commit in a second threadpool call, and with
    every pool thread waiting for the SQLite write lock that the committing request holds, the
    commit would never get a thread (a deadlock until the busy timeout). Committing on the event
    loop instead would keep the lock held while the request waits for the loop."""
    with db.session_scope() as session:
        yield session


def _committing(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        for value in kwargs.values():
            if isinstance(value, Session):
                value.commit()  # same thread that began the transaction: the lock is released
        return result

    return run




DatabaseDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[LabSettings, Depends(get_settings)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _is_admin(request: Request, token: str) -> bool:
    admin: str | None = request.app.state.admin_token
    return admin is not None and hmac.compare_digest(admin.encode(), token.encode())


class TokenCache:
    """Device tokens recently authenticated, for ``ttl_s`` seconds (0 disables it).

    Agents call several times a second; this saves a database transaction per call. Retiring a
    device clears the cache of this process; another worker process honours the retirement
    within ``ttl_s`` (coordinator.auth_cache_s)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, DeviceSnapshot]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> DeviceSnapshot | None:
        with self._lock:
            hit = self._entries.get(digest)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, digest: str, device: DeviceSnapshot) -> None:
        if self.ttl_s > 0:
            with self._lock:
                if len(self._entries) > 10_000:
                    self._entries.clear()
                self._entries[digest] = (time.monotonic() + self.ttl_s, device)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def device_of_token(request: Request, db: Database, token: str) -> DeviceSnapshot | None:
    """The device a token belongs to (None: unknown or retired), via the token cache."""
    cache: TokenCache = request.app.state.token_cache
    digest = repo.hash_token(token)
    device = cache.get(digest)
    if device is not None:
        return device
    # Its own short read-only transaction, begun and ended in this one threadpool call.
    with db.session_scope(readonly=True) as session:
        device = repo.authenticate(session, token)
    if device is not None:
        cache.put(digest, device)
    return device


def require_admin(request: Request, credentials: Credentials, db: DatabaseDep) -> None:
    if credentials is None:
        # the run page's session cookie (star.lab.routes.web): reads only, SameSite=Strict
        if request.method in ("GET", "HEAD") and _is_admin(
                request, request.cookies.get(SESSION_COOKIE) or ""):
            return
        raise _unauthorized("an operator token is required (Authorization: Bearer ...)")
    if _is_admin(request, credentials.credentials):
        return
    if device_of_token(request, db, credentials.credentials) is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a device token cannot do this")
    raise _unauthorized("invalid token")


SESSION_COOKIE = "star_token"  # set by POST /login (star.lab.routes.web)


def require_device(request: Request, credentials: Credentials, db: DatabaseDep) -> DeviceSnapshot:
    if credentials is None:
        raise _unauthorized("a device token is required (Authorization: Bearer ...)")
    device = device_of_token(request, db, credentials.credentials)
    if device is None:
        raise _unauthorized("invalid or retired device token")
    return device


def require_admin_or_device(
    request: Request, credentials: Credentials, db: DatabaseDep
) -> DeviceSnapshot | None:
    """None for the operator, else the device."""
    if credentials is None:
        if request.method in ("GET", "HEAD") and _is_admin(
                request, request.cookies.get(SESSION_COOKIE) or ""):
            return None  # the run page's session cookie (reads only)
        raise _unauthorized("a token is required (Authorization: Bearer ...)")
    if _is_admin(request, credentials.credentials):
        return None
    return require_device(request, credentials, db)


def _calls(dependant: Dependant) -> set[Callable[..., Any]]:
    found: set[Callable[..., Any]] = set()
    for dep in dependant.dependencies:
        if dep.call is not None:
            found.add(dep.call)
        found |= _calls(dep)
    return found


def _documented_errors(path: str, endpoint: Callable[..., Any],
                       kwargs: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The route's error responses for OpenAPI, from its dependencies and parameters; what the
    route declares itself (``responses=``) wins."""
    dependant = get_dependant(path=path, call=endpoint)
    calls = _calls(dependant)
    auth: tuple[int, ...] = ()
    if require_admin in calls:
        auth = (401, 403)
    elif calls & {require_device, require_admin_or_device}:
        auth = (401,)
    body = bool(dependant.body_params) or "requestBody" in (kwargs.get("openapi_extra") or {})
    params = bool(dependant.query_params or dependant.header_params)
    derived = route_errors(auth=auth, path_params=bool(dependant.path_params), body=body,
                           params=params)
    return {**derived, **(kwargs.get("responses") or {})}


class TxRoute(APIRoute):
    """A route whose sync endpoint commits the request's session before it returns, and whose
    OpenAPI operation lists every error it can answer (``star.lab.openapi.route_errors``)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["responses"] = _documented_errors(path, endpoint, kwargs)
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _committing(endpoint)
        super().__init__(path, endpoint, **kwargs)


def id_path(what: str) -> Any:
    """A row id in the path: 1..MAX_ID (an INTEGER column), else a 422 naming it."""
    return PathParam(ge=1, le=MAX_ID, description=f"the {what}'s id (1..{MAX_ID})")


def id_query(what: str) -> Any:
    """An optional row id filter: 1..MAX_ID, else a 422 naming it."""
    return Query(ge=1, le=MAX_ID, description=f"only rows of this {what} (id 1..{MAX_ID})")


Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip (paging)")]

AdminDep = Annotated[None, Depends(require_admin)]
AgentDep = Annotated[DeviceSnapshot, Depends(require_device)]
ReaderDep = Annotated[DeviceSnapshot | None, Depends(require_admin_or_device)]
