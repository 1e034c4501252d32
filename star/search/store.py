"""What the search reads and writes beyond ``star.db.repo``: run status, generation state, and the
rows a generation's evaluation needs. Every function takes a session from
``Database.session_scope()`` and returns frozen snapshots or plain data.

``Run.config`` holds what the run was created from::

    {"search": <SearchConfig as JSON>, "genomes": {"base": [...] | None, "seeds": [[...]]}}

Its lifecycle (status, owner, heartbeat, stop request) is typed columns written only by
``star.db.repo.lifecycle``. A generation's resumable state lives in ``Generation.state`` (see
``star.search.engine``); its jobs are found from the ``jobs`` rows.
Read-modify-write of these JSON documents locks the row first (``FOR UPDATE`` on PostgreSQL;
SQLite transactions here are ``BEGIN IMMEDIATE``, which serialises writers anyway).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from star.db.device_class import DeviceClass
from star.db.errors import NotFoundError
from star.db.models import (
    Artifact,
    Candidate,
    CandidateArtifact,
    Device,
    Generation,
    Job,
    JobStage,
    Measurement,
    Run,
)
from star.db.models import RunStatus as RunStatus  # re-exported: the search's callers use it
from star.db.snapshots import (
    ArtifactSnapshot,
    CandidateSnapshot,
    DeviceSnapshot,
    GenerationSnapshot,
    JobSnapshot,
    MeasurementSnapshot,
    RunSnapshot,
)
from star.genome import identity


def resolve_run(session: Session, ref: str | int) -> RunSnapshot:
    """A run by name, else by numeric id."""
    from star.db import repo

    try:
        return repo.get_run_by_name(session, str(ref))
    except NotFoundError:
        if str(ref).isdigit():
            return repo.get_run(session, int(ref))
        raise


def _locked_run(session: Session, run_id: int) -> Run:
    row = session.scalars(select(Run).where(Run.id == run_id).with_for_update()).one_or_none()
    if row is None:
        raise NotFoundError(f"no run with id {run_id}")
    return row


def update_run_config(session: Session, *, run_id: int, **fields: Any) -> RunSnapshot:
    """Set top-level keys of ``Run.config`` (what the run was created from)."""
    row = _locked_run(session, run_id)
    config = copy.deepcopy(dict(row.config or {}))
    config.update(fields)
    row.config = config
    session.flush()
    return RunSnapshot.of(row)


# ---- generations ---------------------------------------------------------------------------


def get_generation(session: Session, *, run_id: int, index: int) -> GenerationSnapshot | None:
    row = session.scalars(
        select(Generation).where(Generation.run_id == run_id, Generation.index == index)
    ).one_or_none()
    return GenerationSnapshot.of(row) if row is not None else None


def _locked_generation(session: Session, generation_id: int) -> Generation:
    row = session.scalars(
        select(Generation).where(Generation.id == generation_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no generation with id {generation_id}")
    return row


def update_generation(session: Session, *, generation_id: int, **fields: Any) -> GenerationSnapshot:
    """Set top-level keys of ``Generation.state``."""
    row = _locked_generation(session, generation_id)
    state = copy.deepcopy(dict(row.state or {}))
    state.update(fields)
    row.state = state
    session.flush()
    return GenerationSnapshot.of(row)


# ---- what an evaluation reads --------------------------------------------------------------


def candidates_by_hash(session: Session, *, run_id: int,
                       hashes: Iterable[str] | None = None) -> dict[str, CandidateSnapshot]:
    query = select(Candidate).where(Candidate.run_id == run_id).order_by(Candidate.id)
    wanted = None if hashes is None else list(dict.fromkeys(hashes))
    if wanted is not None:
        query = query.where(Candidate.genome_hash.in_(wanted))
    return {r.genome_hash: CandidateSnapshot.of(r) for r in session.scalars(query)}


def jobs_by_id(session: Session, ids: Iterable[int]) -> dict[int, JobSnapshot]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.scalars(select(Job).where(Job.id.in_(wanted)))
    return {r.id: JobSnapshot.of(r) for r in rows}


def jobs_of_candidates(session: Session,
                       candidate_ids: Iterable[int]) -> dict[int, list[JobSnapshot]]:
    wanted = sorted(set(candidate_ids))
    out: dict[int, list[JobSnapshot]] = {c: [] for c in wanted}
    if wanted:
        query = select(Job).where(Job.candidate_id.in_(wanted)).order_by(Job.id)
        for r in session.scalars(query):
            out[r.candidate_id].append(JobSnapshot.of(r))  # type: ignore[index]
    return out


# ---- profile jobs, found from their rows ---------------------------------------------------


def job_key(candidate_id: int, device_class: str, stage: JobStage | str,
            flash_attn: bool, runtime: str = "llama.cpp") -> str:
    """The search's identity of a profile job (``jobs.dedupe_key``, unique): one job per
    candidate x device class x stage x flash-attention setting x runtime, whoever enqueues it
    (llama.cpp keeps the key it had before runtimes existed)."""
    key = f"c{candidate_id}/{device_class}/{JobStage(stage).value}/fa{int(flash_attn)}"
    return key if runtime == "llama.cpp" else f"{key}/{runtime}"


def job_matches(job: JobSnapshot, device_class: str, stage: JobStage | str,
                flash_attn: bool, runtime: str = "llama.cpp") -> bool:
    """Is ``job`` the search's job for this class, stage, setting and runtime? Jobs made before
    stages and settings existed (no stage: screening, no setting: off) count as theirs."""
    return (DeviceClass.parse(device_class).same(job.device_kind, job.device_tags)
            and (job.stage or JobStage.SCREEN.value) == JobStage(stage).value
            and bool(job.flash_attn) == flash_attn and job.runtime == runtime)


def job_exists(session: Session, key: str) -> bool:
    return session.scalars(select(Job.id).where(Job.dedupe_key == key)).first() is not None


def artifacts_of_candidates(session: Session, candidate_ids: Iterable[int], *, quant: str,
                            fmt: str = "gguf") -> dict[int, ArtifactSnapshot]:
    """Each candidate's deployment file of this format and quantization (the latest linked)."""
    wanted = sorted(set(candidate_ids))
    if not wanted:
        return {}
    query = (select(CandidateArtifact.candidate_id, Artifact)
             .join(Artifact, Artifact.id == CandidateArtifact.artifact_id)
             .where(CandidateArtifact.candidate_id.in_(wanted), Artifact.quant == quant,
                    Artifact.format == fmt).order_by(Artifact.id))
    return {cid: ArtifactSnapshot.of(art) for cid, art in session.execute(query)}


def baselines_of(session: Session, *, run_id: int) -> dict[str, CandidateSnapshot]:
    """The run's baseline candidates by genome id."""
    query = (select(Candidate).where(Candidate.run_id == run_id,
                                     Candidate.role == "baseline").order_by(Candidate.id))
    return {r.genome_hash: CandidateSnapshot.of(r) for r in session.scalars(query)}


@dataclass(frozen=True)
class MeasuredRow:
    """A stored measurement with the device that took it."""

    measurement: MeasurementSnapshot
    device: DeviceSnapshot


def measurements_of_candidates(session: Session,
                               candidate_ids: Iterable[int]) -> dict[int, list[MeasuredRow]]:
    wanted = sorted(set(candidate_ids))
    out: dict[int, list[MeasuredRow]] = {c: [] for c in wanted}
    if not wanted:
        return out
    query = (
        select(Measurement, Device)
        .join(Device, Device.id == Measurement.device_id)
        .where(Measurement.candidate_id.in_(wanted))
        .order_by(Measurement.id)
    )
    for m, d in session.execute(query):
        assert m.candidate_id is not None  # selected by it
        out[m.candidate_id].append(MeasuredRow(MeasurementSnapshot.of(m), DeviceSnapshot.of(d)))
    return out


def genome_doc(genes: Iterable[int]) -> dict[str, Any]:
    """The stored form of a genome: ``genome_hash`` of it equals ``Genome.genome_id``."""
    return identity.genome_doc(genes)


def run_summary(session: Session, run: RunSnapshot) -> Mapping[str, Any]:
    """Status, generations and job counts for ``star search status``."""
    gens = session.scalars(
        select(Generation).where(Generation.run_id == run.id).order_by(Generation.index)
    ).all()
    cands = session.scalars(select(Candidate.id).where(Candidate.run_id == run.id)).all()
    states: dict[str, int] = {}
    if cands:
        for state in session.scalars(select(Job.state).where(Job.candidate_id.in_(cands))):
            states[str(getattr(state, "value", state))] = states.get(
                str(getattr(state, "value", state)), 0) + 1
    generations = []
    for g in gens:
        st = g.state or {}
        reasons = st.get("reasons", {})
        generations.append({
            "index": g.index,
            "phase": st.get("phase"),
            "told": bool(st.get("told")),
            "candidates": len(st.get("genome_ids", [])),
            "infeasible": len(reasons),
            "feasible": (len(st.get("genome_ids", [])) - len(reasons)) if st.get("told") else None,
        })
    config = run.config or {}
    return {
        "run": run.name,
        "id": run.id,
        "status": run.status.value if run.status else None,
        "status_reason": run.status_reason,
        "stop_requested": run.stop_requested,
        "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
        "generations_planned": (config.get("search") or {}).get("generations"),
        "generations": generations,
        "candidates": len(cands),
        "jobs": states,
    }


def generation_progress(session: Session, *, run_id: int, index: int) -> dict[str, int]:
    """Counts of generation ``index`` for a progress display: distinct candidates, those that
    passed the pre-screen, exported, proxy-trained, and profile jobs finished of all (every
    stage), all from the rows."""
    gen = get_generation(session, run_id=run_id, index=index)
    if gen is None:
        return {"candidates": 0, "screened": 0, "exported": 0, "trained": 0, "jobs": 0,
                "jobs_done": 0}
    ids = list(dict.fromkeys(gen.state.get("genome_ids") or []))
    cands = candidates_by_hash(session, run_id=run_id, hashes=ids)
    ok = [cands[g] for g in ids if g in cands
          and ((cands[g].analytic_costs or {}).get("prescreen") or {}).get("ok")]
    cids = [c.id for c in ok]
    exported = set(session.scalars(
        select(CandidateArtifact.candidate_id).where(
            CandidateArtifact.candidate_id.in_(cids)))) if cids else set()
    jobs = [j for js in jobs_of_candidates(session, cids).values() for j in js]
    return {
        "candidates": len(ids),
        "screened": len(ok),
        "exported": sum(1 for c in ok if c.id in exported),
        "trained": sum(1 for c in ok if c.proxy_metrics is not None),
        "jobs": len(jobs),
        "jobs_done": sum(1 for j in jobs if j.state.is_finished()),
    }
