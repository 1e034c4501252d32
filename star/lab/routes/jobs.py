"""Jobs (operators): queue a profile job, list, show, cancel, run the reaper now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from device_agents.protocol import JobCreate, JobPublic, JobsPublic, JobStateName
from star.db import JobState, repo
from star.lab.deps import AdminDep, Offset, SessionDep, SettingsDep, TxRoute, id_path, id_query
from star.lab.openapi import NOT_FOUND, conflict
from star.lab.public import job_public

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=TxRoute)

JobId = Annotated[int, id_path("job")]


@router.post("", status_code=status.HTTP_201_CREATED, responses={404: NOT_FOUND})
def create_job(
    body: JobCreate, session: SessionDep, settings: SettingsDep, _: AdminDep
) -> JobPublic:
    """Queue a profile job for one device or a device class (404: no such device, artifact
    or candidate)."""
    device_id = repo.get_device(session, body.device).id if body.device else None
    job = repo.create_profile_job(
        session,
        artifact_id=body.artifact_id,
        contexts=body.contexts,
        repetitions=body.repetitions,
        n_gen=body.n_gen,
        device_id=device_id,
        device_kind=body.device_kind,
        device_tags=body.device_tags,
        candidate_id=body.candidate_id,
        max_attempts=body.max_attempts or settings.coordinator.max_attempts,
        priority=body.priority,
        flash_attn=body.flash_attn,
    )
    return job_public(job)


@router.get("")
def list_jobs(
    session: SessionDep,
    _: AdminDep,
    state: Annotated[JobStateName | None, Query(description="only jobs in this state")] = None,
    candidate_id: Annotated[int | None, id_query("candidate")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="rows at most")] = 100,
    offset: Offset = 0,
) -> JobsPublic:
    """Jobs, oldest first."""
    data = repo.list_jobs(
        session,
        state=JobState(state) if state else None,
        candidate_id=candidate_id,
        limit=limit,
        offset=offset,
    )
    return JobsPublic(data=[job_public(j) for j in data], count=len(data))


@router.post("/reap")
def reap_expired_jobs(session: SessionDep, _: AdminDep) -> list[int]:
    """Requeue (or fail) every job whose lease expired, now; the ids of those touched."""
    return repo.reap_expired(session)


@router.get("/{job_id}")
def get_job(job_id: JobId, session: SessionDep, _: AdminDep) -> JobPublic:
    """One job."""
    return job_public(repo.get_job(session, job_id))


@router.post("/{job_id}/cancel", responses=conflict("The job is finished already.",
                                                    "job 7 is already done"))
def cancel_job(job_id: JobId, session: SessionDep, _: AdminDep) -> JobPublic:
    """Cancel a queued or leased job (its agent learns at its next heartbeat)."""
    return job_public(repo.cancel_job(session, job_id=job_id))
