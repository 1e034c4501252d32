"""Liveness and schema revision (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from device_agents.protocol import Health
from star.db import repo
from star.lab.deps import SessionDep, TxRoute

router = APIRouter(tags=["health"], route_class=TxRoute)


@router.get("/healthz")
def health(request: Request, session: SessionDep) -> Health:
    return Health(
        status="ok",
        schema_revision=request.app.state.schema_revision,
        jobs=repo.count_jobs(session),
    )
