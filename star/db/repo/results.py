"""Results: an agent's report becomes measurement rows, once.

``submit_result`` is idempotent on the agent's idempotency key: the job records the key of the
result it accepted, the measurements are unique per (job, context), and a resubmission with the
same key gets the same answer without writing anything. A result is accepted from the device
holding the lease named by ``lease_token``; also, late, when that lease expired but nobody has
leased the job since (the coordinator was down while the agent measured): the work is done and
device time is the scarce resource.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from device_agents.schemas import BenchReport, ContextMeasurement, Stat
from star.db.errors import ConflictError, ForbiddenError, InvalidError, NotFoundError
from star.db.models import Artifact, Candidate, Job, JobState, Measurement
from star.db.session import db_now, rowcount
from star.db.snapshots import MeasurementSnapshot, ResultSnapshot


def check_report(job: Job, artifact: Artifact, report: BenchReport) -> None:
    """Refuse a report that does not answer this job; ``loc`` names the offending field."""
    asked = set(job.contexts)
    for index, measured in enumerate(report.contexts):
        if measured.context not in asked:
            raise InvalidError(
                ("report", "contexts", index, "context"),
                f"context {measured.context} was not requested by job {job.id} "
                f"(requested {sorted(asked)})",
            )
    missing = asked - {c.context for c in report.contexts}
    if missing:
        raise InvalidError(("report", "contexts"), f"contexts {sorted(missing)} are missing")
    if report.model_sha256 != artifact.sha256:
        raise InvalidError(
            ("report", "model_sha256"),
            f"measured a file with sha256 {report.model_sha256}, "
            f"but job {job.id} is artifact {artifact.id} with sha256 {artifact.sha256}",
        )
    expected = job.runtime or "llama.cpp"
    if report.runtime.runtime != expected:
        raise InvalidError(
            ("report", "runtime", "runtime"),
            f"measured with {report.runtime.runtime}, but job {job.id} is a {expected} job "
            f"(a {artifact.format} file)",
        )


def _is_noisy(stat: Stat | None, noisy_cv: float) -> bool:
    return stat is not None and stat.cv > noisy_cv


def _row(
    job: Job, device_id: int, runtime: dict[str, Any], c: ContextMeasurement, hot: float, cv: float
) -> Measurement:
    before = c.thermal_before.max_c if c.thermal_before else None
    after = c.thermal_after.max_c if c.thermal_after else None
    thermal = None
    if c.thermal_before or c.thermal_after:
        thermal = {
            "before": c.thermal_before.model_dump() if c.thermal_before else None,
            "after": c.thermal_after.model_dump() if c.thermal_after else None,
        }
    return Measurement(
        job_id=job.id,
        candidate_id=job.candidate_id,
        artifact_id=job.artifact_id,
        device_id=device_id,
        context=c.context,
        ttft_median_ms=c.ttft_ms.median if c.ttft_ms else None,
        ttft_stddev_ms=c.ttft_ms.stddev if c.ttft_ms else None,
        ttft_samples_ms=list(c.ttft_ms.samples) if c.ttft_ms else None,
        decode_median_ms=c.decode_ms_per_token.median if c.decode_ms_per_token else None,
        decode_stddev_ms=c.decode_ms_per_token.stddev if c.decode_ms_per_token else None,
        decode_samples_ms=list(c.decode_ms_per_token.samples) if c.decode_ms_per_token else None,
        peak_rss_bytes=c.peak_rss_bytes,
        oom=c.oom,
        error=c.error,
        temp_before_c=before,
        temp_after_c=after,
        thermal=thermal,
        runtime=runtime,
        flagged_hot=any(t is not None and t > hot for t in (before, after)),
        flagged_noisy=_is_noisy(c.ttft_ms, cv) or _is_noisy(c.decode_ms_per_token, cv),
        tries=c.tries,
        conditions=c.conditions.model_dump() if c.conditions else None,
    )


def _answer(session: Session, job: Job) -> ResultSnapshot:
    rows = session.scalars(
        select(Measurement).where(Measurement.job_id == job.id).order_by(Measurement.context)
    ).all()
    assert job.idempotency_key is not None
    return ResultSnapshot(
        job_id=job.id,
        state=JobState(job.state),
        idempotency_key=job.idempotency_key,
        measurement_ids=tuple(r.id for r in rows),
        flagged_hot=tuple(r.context for r in rows if r.flagged_hot),
        flagged_noisy=tuple(r.context for r in rows if r.flagged_noisy),
    )


def submit_result(
    session: Session,
    *,
    job_id: int,
    device_id: int,
    lease_token: str,
    idempotency_key: str,
    report: BenchReport,
    hot_celsius: float = 45.0,
    noisy_cv: float = 0.10,
    now: datetime | None = None,
) -> ResultSnapshot:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job with id {job_id}")
    if job.idempotency_key is not None and job.idempotency_key == idempotency_key:
        if job.lease_owner_id != device_id:
            raise ForbiddenError(f"job {job_id} was not measured by this device")
        return _answer(session, job)  # a resubmission: same answer, nothing written
    if job.lease_owner_id != device_id:
        raise ForbiddenError(f"job {job_id} is not leased to this device")
    held = job.state is JobState.LEASED or job.state is JobState.QUEUED  # QUEUED: late result
    if job.lease_token != lease_token or not held:
        raise ConflictError(
            f"job {job_id} is no longer held under this lease (state {job.state.value})"
        )
    artifact = session.get(Artifact, job.artifact_id)
    assert artifact is not None
    check_report(job, artifact, report)

    now = now or db_now(session)
    rows: list[Measurement] = []
    try:
        with session.begin_nested():
            claimed = session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.lease_owner_id == device_id,
                    Job.lease_token == lease_token,
                    Job.state.in_([JobState.LEASED, JobState.QUEUED]),
                )
                .values(
                    state=JobState.DONE,
                    attempts=Job.attempts + 1,  # a finished job counts the attempt that did it
                    idempotency_key=idempotency_key,
                    finished_at=now,
                    updated_at=now,
                    lease_expires_at=None,
                    last_error=None,
                )
                .execution_options(synchronize_session=False)
            )
            if rowcount(claimed) != 1:
                raise ConflictError(f"job {job_id} changed state while the result was stored")
            runtime = report.runtime.model_dump()
            for measured in report.contexts:
                rows.append(_row(job, device_id, runtime, measured, hot_celsius, noisy_cv))
                rows[-1].created_at = now
            session.add_all(rows)
            session.flush()
    except IntegrityError as exc:
        message = f"idempotency key {idempotency_key!r} was used for another job"
        raise ConflictError(message) from exc
    except ConflictError:
        session.expire(job)
        fresh = session.get(Job, job_id)
        if fresh is not None and fresh.idempotency_key == idempotency_key:
            return _answer(session, fresh)  # a concurrent twin of this request won
        raise
    rows.sort(key=lambda r: r.context)
    return ResultSnapshot(
        job_id=job_id,
        state=JobState.DONE,
        idempotency_key=idempotency_key,
        measurement_ids=tuple(r.id for r in rows),
        flagged_hot=tuple(r.context for r in rows if r.flagged_hot),
        flagged_noisy=tuple(r.context for r in rows if r.flagged_noisy),
    )


def list_measurements(
    session: Session,
    *,
    job_id: int | None = None,
    candidate_id: int | None = None,
    device_id: int | None = None,
    run_id: int | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[MeasurementSnapshot]:
    query = select(Measurement).order_by(Measurement.id).limit(limit).offset(offset)
    if job_id is not None:
        query = query.where(Measurement.job_id == job_id)
    if candidate_id is not None:
        query = query.where(Measurement.candidate_id == candidate_id)
    if device_id is not None:
        query = query.where(Measurement.device_id == device_id)
    if run_id is not None:
        query = query.join(Candidate, Candidate.id == Measurement.candidate_id).where(
            Candidate.run_id == run_id
        )
    return [MeasurementSnapshot.of(r) for r in session.scalars(query)]
