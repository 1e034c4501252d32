"""Artifacts: registered by the search (or uploaded by an operator), served to agents by id."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from star.db.errors import NotFoundError
from star.db.models import Artifact, CandidateArtifact
from star.db.session import db_now
from star.db.snapshots import ArtifactSnapshot
from star.db.store import ArtifactStore


def register_artifact(
    session: Session,
    *,
    sha256: str,
    size_bytes: int,
    path: str,
    format: str = "gguf",
    quant: str,
    candidate_id: int | None = None,
) -> ArtifactSnapshot:
    """Record a file already in the store; the same content registered twice is one artifact."""
    ArtifactStore.relative_path(sha256, format)  # validates sha256 and format
    row = Artifact(
        candidate_id=candidate_id,
        format=format,
        quant=quant,
        sha256=sha256,
        size_bytes=size_bytes,
        path=path,
        created_at=db_now(session),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = session.scalars(select(Artifact).where(Artifact.sha256 == sha256)).one_or_none()
        if existing is None:
            raise NotFoundError(f"no candidate with id {candidate_id}") from None
        return ArtifactSnapshot.of(existing)
    return ArtifactSnapshot.of(row)


def import_artifact(
    session: Session,
    store: ArtifactStore,
    source: Path,
    *,
    quant: str,
    format: str = "gguf",
    candidate_id: int | None = None,
) -> ArtifactSnapshot:
    """Copy ``source`` into the store and register it (what the search calls after export);
    with ``candidate_id``, the file is linked to that candidate even when another candidate
    (the same genome in another run) registered the same content first."""
    relative, sha, size = store.put_file(source, fmt=format)
    art = register_artifact(
        session,
        sha256=sha,
        size_bytes=size,
        path=relative,
        format=format,
        quant=quant,
        candidate_id=candidate_id,
    )
    if candidate_id is not None:
        link_artifact(session, candidate_id=candidate_id, artifact_id=art.id)
    return art


def link_artifact(session: Session, *, candidate_id: int, artifact_id: int) -> None:
    """Record that ``artifact_id`` is a deployment file of ``candidate_id`` (idempotent)."""
    exists = session.get(CandidateArtifact, (candidate_id, artifact_id))
    if exists is None:
        session.add(CandidateArtifact(candidate_id=candidate_id, artifact_id=artifact_id))
        session.flush()


def get_artifact(session: Session, artifact_id: int) -> ArtifactSnapshot:
    row = session.get(Artifact, artifact_id)
    if row is None:
        raise NotFoundError(f"no artifact with id {artifact_id}")
    return ArtifactSnapshot.of(row)


def list_artifacts(
    session: Session, *, candidate_id: int | None = None, limit: int = 100, offset: int = 0
) -> list[ArtifactSnapshot]:
    query = select(Artifact).order_by(Artifact.id).limit(limit).offset(offset)
    if candidate_id is not None:
        query = query.where(Artifact.candidate_id == candidate_id)
    return [ArtifactSnapshot.of(r) for r in session.scalars(query)]
