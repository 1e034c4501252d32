"""Runs, generations and candidates: written by the search, read by the API and the frontier."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from star.db.errors import AlreadyExistsError, NotFoundError
from star.db.models import Candidate, CandidateRole, Generation, Run
from star.db.session import db_now, rowcount
from star.db.snapshots import CandidateSnapshot, GenerationSnapshot, RunSnapshot
from star.genome.identity import content_hash


def genome_hash(genome: dict[str, Any]) -> str:
    """A stored genome document's identity (``star.genome.identity``: equals the genome id)."""
    return content_hash(genome)


def create_run(
    session: Session, *, name: str, config: dict[str, Any] | None = None, seed: int | None = None
) -> RunSnapshot:
    row = Run(name=name, config=dict(config or {}), seed=seed, created_at=db_now(session))
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise AlreadyExistsError(f"a run named {name!r} already exists") from exc
    return RunSnapshot.of(row)


def get_run(session: Session, run_id: int) -> RunSnapshot:
    row = session.get(Run, run_id)
    if row is None:
        raise NotFoundError(f"no run with id {run_id}")
    return RunSnapshot.of(row)


def get_run_by_name(session: Session, name: str) -> RunSnapshot:
    row = session.scalars(select(Run).where(Run.name == name)).one_or_none()
    if row is None:
        raise NotFoundError(f"no run named {name!r}")
    return RunSnapshot.of(row)


def list_runs(session: Session) -> list[RunSnapshot]:
    return [RunSnapshot.of(r) for r in session.scalars(select(Run).order_by(Run.id))]


def create_generation(
    session: Session, *, run_id: int, index: int, state: dict[str, Any] | None = None
) -> GenerationSnapshot:
    """Create generation ``index`` of a run, or return it if it exists (resumable search)."""
    now = db_now(session)
    row = Generation(run_id=run_id, index=index, state=dict(state or {}), created_at=now)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = session.scalars(
            select(Generation).where(Generation.run_id == run_id, Generation.index == index)
        ).one_or_none()
        if existing is None:  # the IntegrityError was something else (e.g. no such run)
            raise NotFoundError(f"no run with id {run_id}") from None
        return GenerationSnapshot.of(existing)
    return GenerationSnapshot.of(row)


def list_generations(session: Session, run_id: int) -> list[GenerationSnapshot]:
    query = select(Generation).where(Generation.run_id == run_id).order_by(Generation.index)
    return [GenerationSnapshot.of(r) for r in session.scalars(query)]


def add_candidate(
    session: Session,
    *,
    run_id: int,
    genome: dict[str, Any],
    generation_id: int | None = None,
    arch_spec: dict[str, Any] | None = None,
    analytic_costs: dict[str, Any] | None = None,
    proxy_metrics: dict[str, Any] | None = None,
    role: CandidateRole = CandidateRole.CANDIDATE,
    label: str | None = None,
) -> CandidateSnapshot:
    """Add a candidate; a genome already in the run returns the existing candidate."""
    digest = genome_hash(genome)
    row = Candidate(
        run_id=run_id,
        generation_id=generation_id,
        genome=genome,
        genome_hash=digest,
        arch_spec=arch_spec,
        analytic_costs=analytic_costs,
        proxy_metrics=proxy_metrics,
        created_at=db_now(session),
        role=CandidateRole(role).value,
        label=label,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = session.scalars(
            select(Candidate).where(Candidate.run_id == run_id, Candidate.genome_hash == digest)
        ).one_or_none()
        if existing is None:
            raise NotFoundError(f"no run with id {run_id}") from None
        return CandidateSnapshot.of(existing)
    return CandidateSnapshot.of(row)


def update_candidate(
    session: Session,
    *,
    candidate_id: int,
    arch_spec: dict[str, Any] | None = None,
    analytic_costs: dict[str, Any] | None = None,
    proxy_metrics: dict[str, Any] | None = None,
    export_error: str | None = None,
) -> CandidateSnapshot:
    """Set the given (non-None) figures of a candidate."""
    row = session.get(Candidate, candidate_id)
    if row is None:
        raise NotFoundError(f"no candidate with id {candidate_id}")
    if arch_spec is not None:
        row.arch_spec = arch_spec
    if analytic_costs is not None:
        row.analytic_costs = analytic_costs
    if proxy_metrics is not None:
        row.proxy_metrics = proxy_metrics
    if export_error is not None:
        row.export_error = export_error[:4000]
    session.flush()
    return CandidateSnapshot.of(row)


def get_candidate(session: Session, candidate_id: int) -> CandidateSnapshot:
    row = session.get(Candidate, candidate_id)
    if row is None:
        raise NotFoundError(f"no candidate with id {candidate_id}")
    return CandidateSnapshot.of(row)


def list_candidates(
    session: Session, *, run_id: int, generation_id: int | None = None
) -> list[CandidateSnapshot]:
    query = select(Candidate).where(Candidate.run_id == run_id).order_by(Candidate.id)
    if generation_id is not None:
        query = query.where(Candidate.generation_id == generation_id)
    return [CandidateSnapshot.of(r) for r in session.scalars(query)]


def delete_run(session: Session, *, run_id: int) -> dict[str, Any]:
    """Delete a run with everything it made: generations, candidates, their profile jobs and
    measurements, and their artifact rows. Returns the counts and the artifact paths (relative
    to the store) whose files the caller removes once the transaction has committed. A running
    run is refused (stop it first): its engine would write into rows that no longer exist."""
    from sqlalchemy import delete

    from star.db.errors import ConflictError
    from star.db.models import Artifact, CandidateArtifact, Job, Measurement, RunStatus

    row = session.scalars(select(Run).where(Run.id == run_id).with_for_update()).one_or_none()
    if row is None:
        raise NotFoundError(f"no run with id {run_id}")
    if row.status == RunStatus.RUNNING.value:
        raise ConflictError(f"run {row.name!r} is running: stop it first (`star search stop`)")
    cids = list(session.scalars(select(Candidate.id).where(Candidate.run_id == run_id)))
    jobs = list(session.scalars(select(Job.id).where(Job.candidate_id.in_(cids)))) if cids else []
    linked: set[int] = set()
    if cids:
        linked = set(session.scalars(select(CandidateArtifact.artifact_id)
                                     .where(CandidateArtifact.candidate_id.in_(cids))))
    counts: dict[str, Any] = {"candidates": len(cids), "jobs": len(jobs)}
    counts["measurements"] = rowcount(session.execute(
        delete(Measurement).where(Measurement.job_id.in_(jobs)))) if jobs else 0
    if jobs:
        session.execute(delete(Job).where(Job.id.in_(jobs)))
    if cids:
        session.execute(delete(CandidateArtifact)
                        .where(CandidateArtifact.candidate_id.in_(cids)))
    # a file another run's candidate, a job or a measurement still uses stays
    used = set(session.scalars(select(CandidateArtifact.artifact_id)
                               .where(CandidateArtifact.artifact_id.in_(linked))))
    used |= set(session.scalars(select(Job.artifact_id).where(Job.artifact_id.in_(linked))))
    used |= set(session.scalars(select(Measurement.artifact_id)
                                .where(Measurement.artifact_id.in_(linked))))
    gone = session.execute(select(Artifact.id, Artifact.path)
                           .where(Artifact.id.in_(linked - used))).all() if linked else []
    if gone:
        session.execute(delete(Artifact).where(Artifact.id.in_([a for a, _ in gone])))
    counts["artifacts"] = len(gone)
    counts["paths"] = [p for _, p in gone]
    session.execute(delete(Candidate).where(Candidate.run_id == run_id))
    session.execute(delete(Generation).where(Generation.run_id == run_id))
    session.delete(row)
    session.flush()
    return counts
