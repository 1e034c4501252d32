"""The job queue: create, lease by compare-and-set, heartbeat, reap, fail, cancel.

Claiming is ``UPDATE jobs SET state='leased', ... WHERE id=:j AND state='queued'``; it succeeds
iff rowcount == 1, on every backend (``SELECT ... FOR UPDATE`` does nothing on SQLite; on
PostgreSQL the candidates are read with SKIP LOCKED only to spread concurrent leasers). Every lease
gets a fresh ``lease_token`` naming that attempt; heartbeats, results and failures must carry it,
so a stale agent can never touch a later attempt. All times come from the database clock.

``attempts`` counts attempts that ended badly (lease expired, or the agent reported a failure);
when it reaches ``max_attempts`` the job fails with the last reason.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from star.db.device_class import DeviceClass
from star.db.errors import ConflictError, ForbiddenError, NotFoundError
from star.db.models import Artifact, Device, Job, JobState
from star.db.runtimes import device_runtimes, runtime_of_format
from star.db.session import db_now, rowcount
from star.db.snapshots import ArtifactSnapshot, DeviceSnapshot, JobSnapshot, LeaseSnapshot

LEASE_SCAN = 16  # queued jobs examined per lease call (tags are matched in Python)


def create_profile_job(
    session: Session,
    *,
    artifact_id: int,
    contexts: Sequence[int],
    repetitions: int,
    device_id: int | None = None,
    device_kind: str | None = None,
    device_tags: Iterable[str] = (),
    candidate_id: int | None = None,
    n_gen: int = 32,
    max_attempts: int = 3,
    priority: int = 0,
    stage: str | None = None,
    flash_attn: bool | None = None,
    dedupe_key: str | None = None,
) -> JobSnapshot:
    """Queue one artifact x one device (or a device class: kind + tags) x contexts x reps.

    ``dedupe_key`` is unique: a second job with the same key raises ``IntegrityError`` at flush
    (another engine got there first), so callers that may race run this in its own savepoint."""
    if device_id is None and device_kind is None:
        raise ValueError("a job needs a device_id or a device_kind")
    if not contexts or any(int(c) <= 0 for c in contexts) or len(set(contexts)) != len(contexts):
        raise ValueError("contexts must be distinct positive integers")
    if repetitions <= 0 or n_gen <= 0 or max_attempts <= 0:
        raise ValueError("repetitions, n_gen and max_attempts must be positive")
    artifact = session.get(Artifact, artifact_id)
    if artifact is None:
        raise NotFoundError(f"no artifact with id {artifact_id}")
    runtime = runtime_of_format(artifact.format)  # UnknownFormat (a ValueError) otherwise
    if device_id is not None and session.get(Device, device_id) is None:
        raise NotFoundError(f"no device with id {device_id}")
    now = db_now(session)
    row = Job(
        kind="profile",
        state=JobState.QUEUED,
        artifact_id=artifact_id,
        candidate_id=candidate_id,
        device_id=device_id,
        device_kind=device_kind,
        device_tags=sorted(set(device_tags)),
        contexts=[int(c) for c in contexts],
        repetitions=repetitions,
        n_gen=n_gen,
        priority=priority,
        attempts=0,
        max_attempts=max_attempts,
        created_at=now,
        updated_at=now,
        stage=stage,
        flash_attn=flash_attn,
        dedupe_key=dedupe_key,
        runtime=runtime,
    )
    session.add(row)
    session.flush()
    return JobSnapshot.of(row)


def get_job(session: Session, job_id: int) -> JobSnapshot:
    row = session.get(Job, job_id)
    if row is None:
        raise NotFoundError(f"no job with id {job_id}")
    return JobSnapshot.of(row)


def list_jobs(
    session: Session,
    *,
    state: JobState | None = None,
    candidate_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[JobSnapshot]:
    query = select(Job).order_by(Job.id).limit(limit).offset(offset)
    if state is not None:
        query = query.where(Job.state == state)
    if candidate_id is not None:
        query = query.where(Job.candidate_id == candidate_id)
    return [JobSnapshot.of(r) for r in session.scalars(query)]


def count_jobs(session: Session) -> dict[str, int]:
    counts = {s.value: 0 for s in JobState}
    for state in session.scalars(select(Job.state)):
        counts[JobState(state).value] += 1
    return counts


def reap_expired(session: Session, *, now: datetime | None = None) -> list[int]:
    """Requeue every leased job whose lease expired (attempts + 1), or fail it at max attempts."""
    now = now or db_now(session)
    expired = session.execute(
        select(Job.id, Job.lease_token, Job.lease_owner_id, Job.attempts, Job.max_attempts).where(
            Job.state == JobState.LEASED, Job.lease_expires_at < now
        )
    ).all()
    reaped: list[int] = []
    for job_id, token, owner, attempts, max_attempts in expired:
        reason = f"lease expired (attempt {attempts + 1}, held by device id {owner})"
        values: dict[str, object] = {"attempts": Job.attempts + 1, "last_error": reason}
        if attempts + 1 >= max_attempts:
            values |= {
                "state": JobState.FAILED,
                "finished_at": now,
                "last_error": f"failed after {attempts + 1} attempts: {reason}",
            }
        else:
            # Owner and token stay: a late result of this very attempt can still be accepted
            # while nobody else has leased the job (see results.submit_result).
            values |= {"state": JobState.QUEUED, "lease_expires_at": None}
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.LEASED, Job.lease_token == token)
            .values(updated_at=now, **values)
        )
        if rowcount(result) == 1:
            reaped.append(job_id)
    session.flush()
    return reaped


def lease_job(
    session: Session,
    *,
    device: DeviceSnapshot,
    lease_seconds: float,
    reap: bool = True,
    now: datetime | None = None,
) -> LeaseSnapshot | None:
    """Lease the first queued job this device may run (its class, and a runtime it
    advertised), or None. Compare-and-set per job."""
    now = now or db_now(session)
    if reap:
        reap_expired(session, now=now)
    eligible = and_(
        or_(
            Job.device_id == device.id,
            and_(
                Job.device_id.is_(None),
                or_(Job.device_kind.is_(None), Job.device_kind == device.kind),
            ),
        ),
        Job.runtime.in_(device_runtimes(device.properties)),  # never a .pte to a llama.cpp agent
    )
    # On PostgreSQL, SKIP LOCKED lets concurrent leasers look at different rows instead of
    # queueing on the first one's row lock; the claim itself is still the compare-and-set
    # below (SQLite ignores FOR UPDATE and serialises writers anyway).
    queued = session.execute(
        select(Job.id, Job.device_tags)
        .where(Job.state == JobState.QUEUED, eligible)
        .order_by(Job.priority.desc(), Job.id)
        .limit(LEASE_SCAN)
        .with_for_update(skip_locked=True)
    ).all()
    expires = now + timedelta(seconds=lease_seconds)
    for job_id, tags in queued:
        if not DeviceClass(device.kind, tuple(tags or ())).serves(device.kind, device.tags):
            continue
        token = secrets.token_hex(16)
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.QUEUED)
            .values(
                state=JobState.LEASED,
                lease_owner_id=device.id,
                lease_token=token,
                lease_expires_at=expires,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) == 1:
            row = session.get(Job, job_id, populate_existing=True)
            artifact = session.get(Artifact, row.artifact_id) if row is not None else None
            assert row is not None and artifact is not None
            return LeaseSnapshot(
                job=JobSnapshot.of(row),
                artifact=ArtifactSnapshot.of(artifact),
                lease_token=token,
                lease_expires_at=expires.replace(tzinfo=UTC),
            )
    return None


def _held(session: Session, job_id: int, device_id: int, lease_token: str) -> Job:
    """The job, if ``device_id`` holds its lease ``lease_token``; else 404/403/409."""
    row = session.get(Job, job_id)
    if row is None:
        raise NotFoundError(f"no job with id {job_id}")
    if row.lease_owner_id != device_id:
        raise ForbiddenError(f"job {job_id} is not leased to this device")
    if row.lease_token != lease_token or row.state is not JobState.LEASED:
        raise ConflictError(
            f"job {job_id} is no longer held under this lease (state {row.state.value})"
        )
    return row


def heartbeat_job(
    session: Session,
    *,
    job_id: int,
    device_id: int,
    lease_token: str,
    lease_seconds: float,
    now: datetime | None = None,
) -> datetime:
    """Extend a held lease to now + lease_seconds (database clock); returns the new expiry.

    One compare-and-set UPDATE; only a refused heartbeat reads the row, to say why."""
    now = now or db_now(session)
    expires = now + timedelta(seconds=lease_seconds)
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.lease_owner_id == device_id,
            Job.state == JobState.LEASED,
            Job.lease_token == lease_token,
            Job.lease_expires_at >= now,
        )
        .values(lease_expires_at=expires, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        _held(session, job_id, device_id, lease_token)  # 404 / 403 / 409 with the reason
        raise ConflictError(f"job {job_id}: the lease expired before this heartbeat")
    return expires.replace(tzinfo=UTC)


def fail_job(
    session: Session,
    *,
    job_id: int,
    device_id: int,
    lease_token: str,
    reason: str,
    retry: bool = True,
) -> JobSnapshot:
    """The agent gives the job back: requeue (attempts + 1) or fail at max attempts / no retry."""
    row = _held(session, job_id, device_id, lease_token)
    now = db_now(session)
    attempts = row.attempts + 1
    final = not retry or attempts >= row.max_attempts
    values: dict[str, object] = {
        "attempts": attempts,
        "updated_at": now,
        "lease_expires_at": None,
        "last_error": reason if not final else f"failed after {attempts} attempts: {reason}",
        "state": JobState.FAILED if final else JobState.QUEUED,
    }
    if final:
        values["finished_at"] = now
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.LEASED, Job.lease_token == lease_token)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        raise ConflictError(f"job {job_id} is no longer held under this lease")
    session.refresh(row)
    return JobSnapshot.of(row)


def release_device_jobs(session: Session, *, device_id: int, reason: str) -> list[int]:
    """Requeue every job a device holds (its phone is gone); counts as a failed attempt."""
    held = session.execute(
        select(Job.id, Job.lease_token).where(
            Job.state == JobState.LEASED, Job.lease_owner_id == device_id
        )
    ).all()
    released = []
    for job_id, token in held:
        if token is None:
            continue
        try:
            fail_job(session, job_id=job_id, device_id=device_id, lease_token=token, reason=reason)
            released.append(job_id)
        except ConflictError:
            continue
    return released


def cancel_job(session: Session, *, job_id: int, reason: str | None = None) -> JobSnapshot:
    """Cancel a queued or leased job; ``reason`` is kept as its last error (the search cancels
    at a generation deadline, an operator by hand)."""
    row = session.get(Job, job_id)
    if row is None:
        raise NotFoundError(f"no job with id {job_id}")
    if JobState(row.state).is_finished():
        raise ConflictError(f"job {job_id} is already {row.state.value}")
    now = db_now(session)
    row.state = JobState.CANCELLED
    if reason is not None:
        row.last_error = reason
    row.finished_at = now
    row.updated_at = now
    row.lease_expires_at = None
    session.flush()
    return JobSnapshot.of(row)
