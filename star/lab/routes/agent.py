"""The agent side: who am I, properties, heartbeat, lease, result, failure. Device token only."""

from __future__ import annotations

from fastapi import APIRouter

from device_agents.protocol import (
    DevicePublic,
    Heartbeat,
    HeartbeatAck,
    JobFailure,
    JobPublic,
    LeaseRequest,
    LeaseResponse,
    PropertiesUpdate,
    RemeasurePolicy,
    ResultAck,
    ResultSubmission,
)
from star.db import db_now, repo
from star.db.errors import InvalidError
from star.lab.deps import AgentDep, SessionDep, SettingsDep, TxRoute
from star.lab.public import aware, device_public, job_public, job_spec, result_ack

router = APIRouter(prefix="/agent", tags=["agent"], route_class=TxRoute)


@router.get("/me")
def whoami(device: AgentDep, session: SessionDep, settings: SettingsDep) -> DevicePublic:
    return device_public(
        device, now=db_now(session), offline_after_s=settings.coordinator.device_offline_after_s
    )


@router.put("/properties")
def put_properties(
    body: PropertiesUpdate, device: AgentDep, session: SessionDep, settings: SettingsDep
) -> DevicePublic:
    if body.properties.kind != device.kind:
        raise InvalidError(
            ("properties", "kind"),
            f"device {device.name} is registered as {device.kind}, not {body.properties.kind}",
        )
    updated = repo.update_properties(
        session, device_id=device.id, properties=body.properties.model_dump()
    )
    return device_public(
        updated, now=db_now(session), offline_after_s=settings.coordinator.device_offline_after_s
    )


@router.post("/heartbeat")
def heartbeat(
    body: Heartbeat, device: AgentDep, session: SessionDep, settings: SettingsDep
) -> HeartbeatAck:
    now = db_now(session)
    repo.mark_seen(session, device_id=device.id, now=now, online=body.online, reason=body.reason)
    released: list[int] = []
    if not body.online:
        reason = f"device {device.name} went offline: {body.reason or 'reported by its agent'}"
        released = repo.release_device_jobs(session, device_id=device.id, reason=reason)
    expires = None
    valid = None
    if body.job_id is not None and body.lease_token is not None and body.online:
        expires = repo.heartbeat_job(
            session,
            job_id=body.job_id,
            device_id=device.id,
            lease_token=body.lease_token,
            lease_seconds=settings.coordinator.lease_seconds,
            now=now,
        )
        valid = True
    return HeartbeatAck(
        server_time=aware(now),
        lease_expires_at=expires,
        lease_valid=valid,
        released_jobs=released,
    )


@router.post("/lease")
def lease(
    device: AgentDep, session: SessionDep, settings: SettingsDep, body: LeaseRequest | None = None
) -> LeaseResponse:
    now = db_now(session)
    repo.mark_seen(session, device_id=device.id, now=now, online=True)
    lease_s = settings.coordinator.lease_seconds
    got = repo.lease_job(session, device=device, lease_seconds=lease_s, now=now)
    if got is None:
        return LeaseResponse(job=None, retry_after_s=settings.agent.poll_interval_s)
    c = settings.coordinator
    policy = RemeasurePolicy(noisy_cv=c.noisy_cv, hot_celsius=c.hot_celsius,
                             max_tries=c.max_tries)
    return LeaseResponse(job=job_spec(got, c.lease_seconds, policy))


@router.post("/jobs/{job_id}/result")
def submit_result(
    job_id: int, body: ResultSubmission, device: AgentDep, session: SessionDep, s: SettingsDep
) -> ResultAck:
    result = repo.submit_result(
        session,
        job_id=job_id,
        device_id=device.id,
        lease_token=body.lease_token,
        idempotency_key=body.idempotency_key,
        report=body.report,
        hot_celsius=s.coordinator.hot_celsius,
        noisy_cv=s.coordinator.noisy_cv,
    )
    return result_ack(result)


@router.post("/jobs/{job_id}/failure")
def report_failure(
    job_id: int, body: JobFailure, device: AgentDep, session: SessionDep
) -> JobPublic:
    job = repo.fail_job(
        session,
        job_id=job_id,
        device_id=device.id,
        lease_token=body.lease_token,
        reason=body.reason,
        retry=body.retry,
    )
    if body.device_gone:
        repo.touch_device(session, device_id=device.id, online=False, reason=body.reason)
    return job_public(job)
