"""The agent side: who am I, properties, heartbeat, lease, result, failure. Device token only.

A result the coordinator refuses (422: a figure out of bounds, a context the job did not ask
for, another file's sha256) ends that attempt at once: the job goes back to the queue (or fails
after its last attempt) with the refusal as its last error. It does not sit leased until the
lease expires, and an agent that resends the same refused body changes nothing more. A body
the schema refuses is caught by ``ResultRoute`` (before the endpoint runs); a report that
contradicts the job, by the endpoint itself (in its own transaction).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from device_agents.protocol import (
    MAX_ID,
    MAX_REASON_CHARS,
    TOKEN_PATTERN,
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
from star.db import Database, db_now, repo
from star.db.errors import InvalidError, RepoError
from star.lab.deps import (
    AgentDep,
    SessionDep,
    SettingsDep,
    TxRoute,
    device_of_token,
    id_path,
)
from star.lab.openapi import NOT_FOUND, conflict
from star.lab.public import aware, device_public, job_public, job_spec, result_ack

router = APIRouter(prefix="/agent", tags=["agent"], route_class=TxRoute)

JobId = Annotated[int, id_path("job")]
_LEASE_LOST = conflict("The job is no longer held under this lease (requeued, cancelled, "
                       "done by another device).",
                       "job 7 is no longer held under this lease (state queued)")
_NOT_YOURS: dict[int | str, dict[str, Any]] = {403: {
    "description": "The job is leased to another device.",
    "content": {"application/json": {"example": {"detail": "job 7 is not leased to this device"}}},
}}


def _refusal(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())[1:])  # without "body"
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)


def _end_attempt(session: Session, *, job_id: int, device_id: int, lease_token: str,
                 reason: str) -> None:
    try:
        repo.fail_job(session, job_id=job_id, device_id=device_id, lease_token=lease_token,
                      reason=f"the coordinator refused its result: {reason}"[:MAX_REASON_CHARS])
    except RepoError:  # not this device's lease (any more): nothing to end
        session.rollback()


def end_refused_attempt(request: Request, body: Any, reason: str) -> None:
    """Fail the attempt whose result was refused, if the request names a lease its device
    holds (else nothing: a refusal must not let anyone touch another device's job)."""
    job_id = request.path_params.get("job_id", "")
    auth = request.headers.get("authorization", "")
    token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
    lease = body.get("lease_token") if isinstance(body, dict) else None
    if not (job_id.isdigit() and 0 < int(job_id) <= MAX_ID and token and isinstance(lease, str)
            and re.fullmatch(TOKEN_PATTERN, lease)):
        return
    db: Database = request.app.state.db
    device = device_of_token(request, db, token)
    if device is None:
        return
    with db.session_scope() as session:
        _end_attempt(session, job_id=int(job_id), device_id=device.id, lease_token=lease,
                     reason=reason)


class ResultRoute(TxRoute):
    """The result route: a body its schema refuses (422) ends the attempt it names."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def refusing(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                await run_in_threadpool(end_refused_attempt, request, exc.body, _refusal(exc))
                raise

        return refusing


results = APIRouter(route_class=ResultRoute)


@router.get("/me")
def get_own_device(device: AgentDep, session: SessionDep, settings: SettingsDep) -> DevicePublic:
    """The device this token belongs to."""
    return device_public(
        device, now=db_now(session), offline_after_s=settings.coordinator.device_offline_after_s
    )


@router.put("/properties")
def update_properties(
    body: PropertiesUpdate, device: AgentDep, session: SessionDep, settings: SettingsDep
) -> DevicePublic:
    """Store what the agent reads off its device (model, SoC, memory, cores)."""
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


@router.post("/heartbeat", responses={**_LEASE_LOST, **_NOT_YOURS, 404: NOT_FOUND})
def send_heartbeat(
    body: Heartbeat, device: AgentDep, session: SessionDep, settings: SettingsDep
) -> HeartbeatAck:
    """Say the device is alive (or gone); naming a job extends its lease."""
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
def lease_job(
    device: AgentDep, session: SessionDep, settings: SettingsDep, body: LeaseRequest | None = None
) -> LeaseResponse:
    """Lease the next job this device can run (highest priority, oldest first), if any."""
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


@results.post("/jobs/{job_id}/result", responses={**_LEASE_LOST, **_NOT_YOURS})
def submit_result(
    job_id: JobId, body: ResultSubmission, device: AgentDep, session: SessionDep, s: SettingsDep
) -> ResultAck:
    """Store a finished measurement once (idempotent on ``idempotency_key``). A refused
    result (422) ends the attempt: the job is requeued with the refusal as its last error."""
    try:
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
    except InvalidError as exc:  # the report contradicts the job: this attempt is over
        session.rollback()
        _end_attempt(session, job_id=job_id, device_id=device.id,
                     lease_token=body.lease_token, reason=str(exc))
        session.commit()
        raise
    return result_ack(result)


@router.post("/jobs/{job_id}/failure", responses={**_LEASE_LOST, **_NOT_YOURS})
def report_failure(
    job_id: JobId, body: JobFailure, device: AgentDep, session: SessionDep
) -> JobPublic:
    """Give the job back: requeued, or failed for good (``retry`` false or no attempts left)."""
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


router.include_router(results)
