"""Runs and their candidates (read-only here: the search writes them through star.db.repo)."""

from __future__ import annotations

from fastapi import APIRouter

from device_agents.protocol import CandidatePublic, CandidatesPublic, RunPublic, RunsPublic
from star.db import repo
from star.lab.deps import AdminDep, SessionDep, TxRoute
from star.lab.public import candidate_public, run_public

router = APIRouter(tags=["runs"], route_class=TxRoute)


@router.get("/runs")
def list_runs(session: SessionDep, _: AdminDep) -> RunsPublic:
    data = [run_public(r) for r in repo.list_runs(session)]
    return RunsPublic(data=data, count=len(data))


@router.get("/runs/{run_id}")
def get_run(run_id: int, session: SessionDep, _: AdminDep) -> RunPublic:
    return run_public(repo.get_run(session, run_id))


@router.get("/runs/{run_id}/candidates")
def list_candidates(run_id: int, session: SessionDep, _: AdminDep) -> CandidatesPublic:
    repo.get_run(session, run_id)
    data = [candidate_public(c) for c in repo.list_candidates(session, run_id=run_id)]
    return CandidatesPublic(data=data, count=len(data))


@router.get("/candidates/{candidate_id}")
def get_candidate(candidate_id: int, session: SessionDep, _: AdminDep) -> CandidatePublic:
    return candidate_public(repo.get_candidate(session, candidate_id))
