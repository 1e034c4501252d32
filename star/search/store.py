"""What the search reads and writes beyond ``star.db.repo``: run status, generation state, and the
rows a generation's evaluation needs. Every function takes a session from
``Database.session_scope()`` and returns frozen snapshots or plain data.

Run status lives in ``Run.config`` (there is no column for it; no migration needed)::

    {"search": <SearchConfig as JSON>, "genomes": {"base": [...] | None, "seeds": [[...]]},
     "status": "running" | "stopped" | "done" | "failed", "status_reason": str | None,
     "stop_requested": bool, "heartbeat_at": ISO time (database clock) of the engine's last sign,
     "engine": {"owner": engine_identity() of the engine driving it,
                "driver": "cli" | "coordinator" (coordinators adopt only their own kind)}}

A generation's resumable state lives in ``Generation.state`` (see ``star.search.engine``).
Read-modify-write of these JSON documents locks the row first (``FOR UPDATE`` on PostgreSQL;
SQLite transactions here are ``BEGIN IMMEDIATE``, which serialises writers anyway).
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from star.db.errors import NotFoundError
from star.db.models import Artifact, Candidate, Device, Generation, Job, JobStage, Measurement, Run
from star.db.session import db_now
from star.db.snapshots import (
    ArtifactSnapshot,
    CandidateSnapshot,
    DeviceSnapshot,
    GenerationSnapshot,
    JobSnapshot,
    MeasurementSnapshot,
    RunSnapshot,
)


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # by `star search stop`; `star search resume` continues it
    DONE = "done"
    FAILED = "failed"  # an error stopped the engine; the reason is kept; resumable

    def is_finished(self) -> bool:
        return self is RunStatus.DONE


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
    """Set top-level keys of ``Run.config`` (status, stop_requested, ...)."""
    row = _locked_run(session, run_id)
    config = copy.deepcopy(dict(row.config or {}))
    config.update(fields)
    row.config = config
    session.flush()
    return RunSnapshot.of(row)


def set_status(session: Session, *, run_id: int, status: RunStatus,
               reason: str | None = None, only_owner: str | None = None,
               **extra: Any) -> RunSnapshot | None:
    """Set the run's status; with ``only_owner``, only while that engine still owns the run
    (None is returned, nothing written, once another engine took it over)."""
    if only_owner is not None:
        holder = ((_locked_run(session, run_id).config or {}).get("engine") or {}).get("owner")
        if holder not in (None, only_owner):
            return None
    return update_run_config(
        session, run_id=run_id, status=status.value, status_reason=reason,
        heartbeat_at=db_now(session).isoformat(), **extra,
    )


@dataclass(frozen=True)
class Beat:
    """What an engine's heartbeat learned: a stop was requested, or another engine owns the
    run now (it adopted it while this one was silent)."""

    stop_requested: bool
    taken_over_by: str | None = None

    def reason(self) -> str | None:
        """Why the engine must stop, if it must."""
        if self.taken_over_by is not None:
            return f"run taken over by engine {self.taken_over_by}"
        return "stop requested" if self.stop_requested else None


def heartbeat(session: Session, *, run_id: int, owner: str | None = None) -> Beat:
    """Stamp the engine's heartbeat (database clock), unless ``owner`` no longer owns the run
    (then nothing is stamped)."""
    row = _locked_run(session, run_id)
    config = copy.deepcopy(dict(row.config or {}))
    holder = (config.get("engine") or {}).get("owner")
    if owner is not None and holder is not None and holder != owner:
        return Beat(bool(config.get("stop_requested")), taken_over_by=holder)
    config["heartbeat_at"] = db_now(session).isoformat()
    row.config = config
    session.flush()
    return Beat(bool(config.get("stop_requested")))


def engine_identity() -> str:
    """``host:pid:nonce``: who drives a run (``Run.config["engine"]["owner"]``). The host and
    pid let a coordinator on the same host see at once that a crashed owner is gone."""
    import os
    import secrets
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str | None) -> bool:
    """True only when ``owner`` ran on this host and its process no longer exists."""
    import os
    import socket

    if not owner or owner.count(":") < 2:
        return False
    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def stop_requested(session: Session, *, run_id: int) -> bool:
    row = session.get(Run, run_id)
    if row is None:
        raise NotFoundError(f"no run with id {run_id}")
    return bool((row.config or {}).get("stop_requested"))


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
            flash_attn: bool) -> str:
    """The search's identity of a profile job (``jobs.dedupe_key``, unique): one job per
    candidate x device class x stage x flash-attention setting, whoever enqueues it."""
    return f"c{candidate_id}/{device_class}/{JobStage(stage).value}/fa{int(flash_attn)}"


def job_matches(job: JobSnapshot, device_class: str, stage: JobStage | str,
                flash_attn: bool) -> bool:
    """Is ``job`` the search's job for this class, stage and setting? Jobs made before stages
    and settings existed (no stage: screening, no setting: off) count as theirs."""
    kind, *tags = device_class.split(":")
    return (job.device_kind == kind and set(job.device_tags) == set(tags)
            and (job.stage or JobStage.SCREEN.value) == JobStage(stage).value
            and bool(job.flash_attn) == flash_attn)


def job_exists(session: Session, key: str) -> bool:
    return session.scalars(select(Job.id).where(Job.dedupe_key == key)).first() is not None


def artifacts_of_candidates(session: Session, candidate_ids: Iterable[int], *, quant: str,
                            fmt: str = "gguf") -> dict[int, ArtifactSnapshot]:
    """Each candidate's deployment file of this format and quantization (the latest)."""
    wanted = sorted(set(candidate_ids))
    if not wanted:
        return {}
    query = (select(Artifact).where(Artifact.candidate_id.in_(wanted), Artifact.quant == quant,
                                    Artifact.format == fmt).order_by(Artifact.id))
    return {r.candidate_id: ArtifactSnapshot.of(r)  # type: ignore[misc]
            for r in session.scalars(query)}


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
    return {"encoding": 1, "genes": [int(g) for g in genes]}


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
        "status": config.get("status"),
        "status_reason": config.get("status_reason"),
        "stop_requested": bool(config.get("stop_requested")),
        "heartbeat_at": config.get("heartbeat_at"),
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
        select(Artifact.candidate_id).where(Artifact.candidate_id.in_(cids)))) if cids else set()
    jobs = [j for js in jobs_of_candidates(session, cids).values() for j in js]
    return {
        "candidates": len(ids),
        "screened": len(ok),
        "exported": sum(1 for c in ok if c.id in exported),
        "trained": sum(1 for c in ok if c.proxy_metrics is not None),
        "jobs": len(jobs),
        "jobs_done": sum(1 for j in jobs if j.state.is_finished()),
    }
