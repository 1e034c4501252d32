"""Liveness and schema revision (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from device_agents.protocol import Health
from star.db import repo
from star.lab.deps import SessionDep, TxRoute

router = APIRouter(tags=["health"], route_class=TxRoute)


@router.get("/healthz")
def check_health(request: Request, session: SessionDep) -> Health:
    """Liveness: answers when the database does, with its schema revision and job counts."""
    return Health(
        status="ok",
        schema_revision=request.app.state.schema_revision,
        jobs=repo.count_jobs(session),
    )
