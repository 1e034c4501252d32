"""Measurements (read-only): filter by job, candidate, device or run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from device_agents.protocol import MeasurementsPublic
from star.db import repo
from star.lab.deps import AdminDep, SessionDep, TxRoute
from star.lab.public import measurement_public

router = APIRouter(prefix="/measurements", tags=["measurements"], route_class=TxRoute)


@router.get("")
def list_measurements(
    session: SessionDep,
    _: AdminDep,
    job_id: int | None = None,
    candidate_id: int | None = None,
    device: str | None = None,
    run_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> MeasurementsPublic:
    device_id = repo.get_device(session, device).id if device else None
    data = repo.list_measurements(
        session,
        job_id=job_id,
        candidate_id=candidate_id,
        device_id=device_id,
        run_id=run_id,
        limit=limit,
        offset=offset,
    )
    return MeasurementsPublic(data=[measurement_public(m) for m in data], count=len(data))
