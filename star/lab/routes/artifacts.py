"""Artifacts: an operator (or the search) uploads; agents download by id with the sha256 header.

Ids are integers looked up in the database; the stored path is resolved and checked to lie inside
the artifact store, so no id or row can reach outside it.
"""

from __future__ import annotations

import hashlib
import os
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from device_agents.protocol import MAX_ID, SHA256_HEADER, ArtifactPublic, ArtifactsPublic
from star.db import repo
from star.db.errors import InvalidError
from star.db.store import StoreError
from star.lab.deps import (
    AdminDep,
    DatabaseDep,
    Offset,
    ReaderDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    TxRoute,
    id_path,
    id_query,
)
from star.lab.limits import too_large
from star.lab.openapi import NOT_FOUND, TOO_LARGE
from star.lab.public import artifact_public

router = APIRouter(prefix="/artifacts", tags=["artifacts"], route_class=TxRoute)

ArtifactId = Annotated[int, id_path("artifact")]

_BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post("", status_code=status.HTTP_201_CREATED, openapi_extra=_BINARY_BODY,
             responses={413: TOO_LARGE, 404: NOT_FOUND})
async def upload_artifact(
    request: Request,
    db: DatabaseDep,
    store: StoreDep,
    settings: SettingsDep,
    _: AdminDep,
    quant: Annotated[str, Query(pattern=r"^[A-Za-z0-9_]{1,32}$",
                                description="quantization (q4_0, f16, ...)")],
    format: Annotated[str, Query(pattern=r"^[a-z0-9]{1,16}$",
                                 description="file format")] = "gguf",
    candidate_id: Annotated[int | None, Query(gt=0, le=MAX_ID,
                                              description="the candidate it belongs to")] = None,
    x_artifact_sha256: Annotated[str | None, Header(
        pattern=r"^[0-9a-fA-F]{64}$", description="the file's sha256, checked if sent")] = None,
) -> ArtifactPublic:
    """Upload the raw file as the request body (at most ``coordinator.max_artifact_bytes``,
    else 413); the sha256 header, if sent, is checked. The same bytes again are the same
    artifact."""
    limit = settings.coordinator.max_artifact_bytes
    tmp = store.new_temp()
    try:
        digest = hashlib.sha256()
        size = 0
        async with await anyio.open_file(tmp, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                        detail=too_large(limit, "coordinator.max_artifact_bytes"))
                digest.update(chunk)
                await fh.write(chunk)
            await fh.flush()
            await run_in_threadpool(os.fsync, fh.wrapped.fileno())
        sha = digest.hexdigest()
        if size == 0:
            raise InvalidError(("body",), "artifact is empty")
        if x_artifact_sha256 is not None and x_artifact_sha256.lower() != sha:
            raise InvalidError(
                ("header", SHA256_HEADER), f"the body's sha256 is {sha}, not {x_artifact_sha256}"
            )

        def register() -> ArtifactPublic:
            relative = store.commit_temp(tmp, sha256=sha, fmt=format)
            with db.session_scope() as session:
                artifact = repo.register_artifact(
                    session,
                    sha256=sha,
                    size_bytes=size,
                    path=relative,
                    format=format,
                    quant=quant,
                    candidate_id=candidate_id,
                )
                return artifact_public(artifact)

        return await run_in_threadpool(register)
    finally:
        tmp.unlink(missing_ok=True)


@router.get("")
def list_artifacts(
    session: SessionDep,
    _: AdminDep,
    candidate_id: Annotated[int | None, id_query("candidate")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="rows at most")] = 100,
    offset: Offset = 0,
) -> ArtifactsPublic:
    """Artifacts, oldest first."""
    data = repo.list_artifacts(session, candidate_id=candidate_id, limit=limit, offset=offset)
    return ArtifactsPublic(data=[artifact_public(a) for a in data], count=len(data))


@router.get("/{artifact_id}")
def get_artifact(artifact_id: ArtifactId, session: SessionDep, _: ReaderDep) -> ArtifactPublic:
    """One artifact's record (operator or device)."""
    return artifact_public(repo.get_artifact(session, artifact_id))


@router.get(
    "/{artifact_id}/content",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_artifact(
    artifact_id: ArtifactId, session: SessionDep, store: StoreDep, _: ReaderDep
) -> FileResponse:
    """The file's bytes, with its sha256 in the ``X-Artifact-SHA256`` header."""
    artifact = repo.get_artifact(session, artifact_id)
    try:
        path = store.resolve(artifact.path)
    except StoreError as exc:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"artifact {artifact_id}: {exc}"
        ) from exc
    if not path.is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"artifact {artifact_id}: file missing from store"
        )
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"artifact-{artifact_id}.{artifact.format}",
        headers={SHA256_HEADER: artifact.sha256},
    )
