"""Jobs (operators): queue a profile job, list, show, cancel, run the reaper now."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from device_agents.protocol import JobCreate, JobPublic, JobsPublic, JobStateName
from star.db import JobState, repo
from star.lab.deps import AdminDep, SessionDep, SettingsDep, TxRoute
from star.lab.public import job_public

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=TxRoute)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_job(
    body: JobCreate, session: SessionDep, settings: SettingsDep, _: AdminDep
) -> JobPublic:
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
    state: JobStateName | None = None,
    candidate_id: int | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> JobsPublic:
    data = repo.list_jobs(
        session,
        state=JobState(state) if state else None,
        candidate_id=candidate_id,
        limit=limit,
        offset=offset,
    )
    return JobsPublic(data=[job_public(j) for j in data], count=len(data))


@router.post("/reap")
def reap(session: SessionDep, _: AdminDep) -> list[int]:
    return repo.reap_expired(session)


@router.get("/{job_id}")
def get_job(job_id: int, session: SessionDep, _: AdminDep) -> JobPublic:
    return job_public(repo.get_job(session, job_id))


@router.post("/{job_id}/cancel")
def cancel_job(job_id: int, session: SessionDep, _: AdminDep) -> JobPublic:
    return job_public(repo.cancel_job(session, job_id=job_id))
