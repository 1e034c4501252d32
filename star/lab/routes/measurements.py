"""Measurements (read-only): filter by job, candidate, device or run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from device_agents.protocol import MeasurementsPublic
from star.db import repo
from star.lab.deps import AdminDep, Offset, SessionDep, TxRoute, id_query
from star.lab.openapi import NOT_FOUND
from star.lab.public import measurement_public

router = APIRouter(prefix="/measurements", tags=["measurements"], route_class=TxRoute)


@router.get("", responses={404: NOT_FOUND})
def list_measurements(
    session: SessionDep,
    _: AdminDep,
    job_id: Annotated[int | None, id_query("job")] = None,
    candidate_id: Annotated[int | None, id_query("candidate")] = None,
    device: Annotated[str | None, Query(max_length=64, description=(
        "only this device's (by name; 404 if there is none)"))] = None,
    run_id: Annotated[int | None, id_query("run")] = None,
    limit: Annotated[int, Query(ge=1, le=10000, description="rows at most")] = 1000,
    offset: Offset = 0,
) -> MeasurementsPublic:
    """Measurements, oldest first, filtered by job, candidate, device or run."""
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
