"""Runs and their candidates: launch, stop and resume a search run, read its rows, export its
measurements.

``POST /runs`` validates the body (a ``SearchConfig``: the ``search:`` section of lab_config.yaml
as JSON; its schema is in /docs) completely before anything is written - field checks, genome
files, then a registered device for every measured device class - and answers 422 naming the
field. With ``start=true`` (the default) it creates the run and starts its engine in a thread of
this coordinator (``star.lab.engines``): such a run outlives the process - at shutdown the
engine stops at a phase boundary, after a crash its heartbeat goes stale, and either way a
coordinator adopts the run and continues it by deterministic replay. With ``start=false`` (or
``coordinator.engines: false``) the run is only recorded (status ``stopped``) for ``star search
resume NAME`` to drive from any machine.

``POST /runs/{id}/stop`` asks the engine to stop at its next phase boundary (it stays stopped:
nobody adopts it); ``POST /runs/{id}/resume`` continues a stopped or failed run here.

Relative genome paths in the body are resolved against the working directory of the coordinator.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from datetime import datetime
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response
from sqlalchemy import select

from device_agents.protocol import (
    API_PREFIX,
    CandidatesPublic,
    RunPublic,
    RunsPublic,
)
from star.db import repo
from star.db.models import Artifact, Candidate, Device, Generation, Measurement
from star.lab.deps import AdminDep, DatabaseDep, SessionDep, StoreDep, TxRoute, id_path
from star.lab.openapi import conflict
from star.lab.public import candidate_public, run_public
from star.lab.routes.run_models import (
    ArtifactLink,
    CandidateDetail,
    FrontierPointPublic,
    FrontierPublic,
    MeasurementDetail,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["runs"], route_class=TxRoute)

RunId = Annotated[int, id_path("run")]
CandidateId = Annotated[int, id_path("candidate")]
_NO_ENGINES = ("this coordinator runs no search engines (coordinator.engines: false): launch "
               "with start=false and drive the run with `star search resume NAME`")

# ---- helpers ---------------------------------------------------------------------------------

_PATH = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.*)$", re.S)


def _loc(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return out


def _unprocessable(problems: list[str], where: str = "body") -> HTTPException:
    detail = []
    for p in problems:
        m = _PATH.match(p)
        loc: list[str | int] = [where, *_loc(m.group(1))] if m else [where]
        detail.append({"type": "value_error", "loc": loc, "msg": p, "input": None})
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)


def _supervisor(request: Request) -> Any:
    """This process's ``EngineSupervisor``; 409 when ``coordinator.engines`` is off."""
    supervisor = request.app.state.engines
    if supervisor is None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=_NO_ENGINES)
    return supervisor


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its ``$defs`` inlined (OpenAPI resolves ``$ref`` against the whole
    document, where a model's own ``#/$defs/...`` does not exist). SearchConfig is not
    recursive, so inlining terminates."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


@cache
def search_config_schema() -> dict[str, Any]:
    """The request body of ``POST /runs`` as /docs shows it: ``SearchConfig``'s JSON schema."""
    from star.search.config import SearchConfig

    return _inline_refs(SearchConfig.model_json_schema())


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, list | tuple):
        return ";".join(str(x) for x in v)
    if isinstance(v, datetime):
        return v.isoformat()
    return v


# ---- routes ----------------------------------------------------------------------------------


@router.get("/runs")
def list_runs(session: SessionDep, _: AdminDep) -> RunsPublic:
    """Every run."""
    data = [run_public(r) for r in repo.list_runs(session)]
    return RunsPublic(data=data, count=len(data))


@router.post(
    "/runs", status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": search_config_schema()}}}},
    responses=conflict("The name is taken, or this coordinator runs no engines (start=true).",
                       "name: a run named 'demo' exists; `star search resume demo` continues it"),
)
def launch_run(
    body: dict[str, Any],
    request: Request,
    db: DatabaseDep,
    store: StoreDep,
    _: AdminDep,
    start: Annotated[bool, Query(description="start the engine here (else: star search resume)")]
    = True,
) -> RunPublic:
    """Launch a search run from a ``SearchConfig`` (the ``search:`` section as JSON). The body
    is validated here (not by the schema alone) so that every problem names its field."""
    from pathlib import Path

    from star.db.errors import AlreadyExistsError, NotFoundError
    from star.db.models import RunStatus
    from star.db.repo import lifecycle
    from star.search.config import SearchConfigError, check_devices, parse_search_config
    from star.search.engine import SearchEngine

    supervisor = _supervisor(request) if start else None
    try:
        config = parse_search_config(body, base_dir=Path.cwd())
        with db.session_scope(readonly=True) as s:
            check_devices(config, s)
            try:
                repo.get_run_by_name(s, config.name)
            except NotFoundError:  # the name is free
                pass
            else:
                raise AlreadyExistsError(f"name: a run named {config.name!r} exists; "
                                         f"`star search resume {config.name}` continues it")
    except SearchConfigError as exc:
        raise _unprocessable(exc.problems) from None
    kwargs = supervisor.engine_kwargs() if supervisor is not None else {}
    try:
        engine = SearchEngine.create(db, store, config, **kwargs)
    except SearchConfigError as exc:  # a device retired in between
        raise _unprocessable(exc.problems) from None
    if supervisor is None or not supervisor.launch(engine):
        reason = ("launched with start=false: `star search resume`" if supervisor is None
                  else "the coordinator was shutting down: `star search resume`")
        with db.session_scope() as s:
            lifecycle.finish(s, run_id=engine.run_id, status=RunStatus.STOPPED, reason=reason)
    with db.session_scope(readonly=True) as s:
        return run_public(repo.get_run(s, engine.run_id))


@router.post("/runs/{run_id}/stop")
def stop_run(run_id: RunId, db: DatabaseDep, _: AdminDep) -> RunPublic:
    """Ask the run's engine (wherever it runs) to stop at its next phase boundary. A stopped
    run is not adopted by any coordinator; ``POST /runs/{id}/resume`` continues it."""
    from star.db.repo import lifecycle

    with db.session_scope() as s:
        return run_public(lifecycle.request_stop(s, run_id=run_id))


@router.post("/runs/{run_id}/resume", status_code=status.HTTP_202_ACCEPTED, responses=conflict(
    "The run is done, driven by an engine already, or this coordinator runs no engines.",
    "run 'demo' is done"))
def resume_run(run_id: RunId, request: Request, db: DatabaseDep, _: AdminDep) -> RunPublic:
    """Continue a stopped or failed run in this coordinator (deterministic replay of its told
    generations). 409 if it is done, or if an engine was heard from recently."""
    from star.search.engine import SearchError

    supervisor = _supervisor(request)
    with db.session_scope(readonly=True) as s:
        run = repo.get_run(s, run_id)
    if run.status is not None and run.status.is_finished():
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"run {run.name!r} is done")
    if supervisor.is_driving(run_id):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"run {run.name!r} is already driven by this coordinator")
    try:
        engine = supervisor.open_engine(run_id, force=False, resume=True)
    except SearchError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if not supervisor.claim(run_id, engine.owner, resume=True):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"run {run.name!r} is driven by another engine")
    if not supervisor.launch(engine):
        raise HTTPException(status.HTTP_409_CONFLICT, detail="the coordinator is shutting down")
    with db.session_scope(readonly=True) as s:
        return run_public(repo.get_run(s, run_id))


@router.get("/runs/{run_id}")
def get_run(run_id: RunId, session: SessionDep, _: AdminDep) -> RunPublic:
    """One run."""
    return run_public(repo.get_run(session, run_id))


@router.get("/runs/{run_id}/candidates")
def list_candidates(run_id: RunId, session: SessionDep, _: AdminDep) -> CandidatesPublic:
    """The run's candidates."""
    repo.get_run(session, run_id)
    data = [candidate_public(c) for c in repo.list_candidates(session, run_id=run_id)]
    return CandidatesPublic(data=data, count=len(data))


@router.get("/runs/{run_id}/frontier")
def get_frontier(
    run_id: RunId,
    db: DatabaseDep,
    _: AdminDep,
    device: Annotated[str | None, Query(max_length=200,
                                        description="a device name or class (kind[:tag])")]
    = None,
    objectives: Annotated[str | None, Query(max_length=2000,
                                            description="comma-separated objectives of the run "
                                                        "to compute the front over")] = None,
) -> FrontierPublic:
    """Non-dominated sort of the run's feasible candidates, from its stored rows."""
    from star.search.frontier import FrontierError, pareto_front, run_frontier

    with db.session_scope(readonly=True) as s:
        repo.get_run(s, run_id)
    try:
        report = run_frontier(db, run_id, device=device)
    except FrontierError as exc:
        msg = str(exc).removeprefix("--")
        field = "device" if msg.startswith("device") else "run_id"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
            {"type": "value_error", "loc": ["query" if field == "device" else "path", field],
             "msg": msg, "input": device}]) from None
    selected = list(report.objectives)
    if objectives:
        # a name as listed, or as the run's config wrote it (before retargeting to a class)
        with db.session_scope(readonly=True) as s:
            raw = ((repo.get_run(s, run_id).config or {}).get("search") or {}).get(
                "objectives") or []
        aliases = {**dict(zip(raw, report.objectives, strict=False)),
                   **{o: o for o in report.objectives}}
        wanted = [o.strip() for o in objectives.split(",") if o.strip()]
        unknown = [o for o in wanted if o not in aliases]
        if unknown or not wanted:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
                {"type": "value_error", "loc": ["query", "objectives"],
                 "msg": f"objectives: {unknown or '(none)'} not among the run's objectives "
                        f"{report.objectives}", "input": objectives}])
        selected = list(dict.fromkeys(aliases[o] for o in wanted))
    feasible = [p for p in report.points if p.feasible]
    rows = [[float(v) if (v := p.values[o]) is not None else float("nan") for o in selected]
            for p in feasible]
    front = {feasible[i].candidate_id for i in pareto_front(rows)}

    def clean(v: float | None) -> float | str | None:
        return None if v is None else ("inf" if v == float("inf") else v)

    data = [
        FrontierPointPublic(
            candidate_id=p.candidate_id, genome_id=p.genome_id, generation=p.generation,
            arch=p.arch, values={k: clean(v) for k, v in p.values.items()},
            feasible=p.feasible, reason=p.reason or None, on_front=p.candidate_id in front,
            url=f"{API_PREFIX}/candidates/{p.candidate_id}",
        )
        for p in report.points
    ]
    return FrontierPublic(
        run_id=report.run_id, run=report.run, status=report.status, device=report.device,
        objectives=report.objectives, selected=selected, budgets=report.budgets, data=data,
        count=len(data), front=len(front),
    )


@router.get("/runs/{run_id}/measurements.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def export_measurements_csv(run_id: RunId, session: SessionDep, _: AdminDep) -> Response:
    """Every measurement of the run's candidates, one row each, with its provenance."""
    run = repo.get_run(session, run_id)
    query = (
        select(Measurement, Device, Candidate, Generation.index, Artifact.quant)
        .join(Device, Device.id == Measurement.device_id)
        .join(Candidate, Candidate.id == Measurement.candidate_id)
        .join(Artifact, Artifact.id == Measurement.artifact_id)
        .outerjoin(Generation, Generation.id == Candidate.generation_id)
        .where(Candidate.run_id == run_id)
        .order_by(Measurement.id)
    )
    columns = [
        "run", "run_id", "generation", "candidate_id", "genome_id", "arch", "quant",
        "measurement_id", "job_id", "artifact_id", "device_name", "device_kind", "device_tags",
        "context", "ttft_median_ms", "ttft_stddev_ms", "decode_median_ms", "decode_stddev_ms",
        "peak_rss_bytes", "oom", "error", "temp_before_c", "temp_after_c", "flagged_hot",
        "flagged_noisy", "llama_cpp_commit", "threads", "flash_attn", "cache_type_k",
        "cache_type_v", "n_gen", "repetitions", "created_at",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for m, d, c, gen, quant in session.execute(query):
        rt = m.runtime or {}
        pre = (c.analytic_costs or {}).get("prescreen") or {}
        row = {
            "run": run.name, "run_id": run.id, "generation": gen, "candidate_id": c.id,
            "genome_id": c.genome_hash, "arch": pre.get("arch") or (c.arch_spec or {}).get("arch"),
            "quant": quant, "measurement_id": m.id, "job_id": m.job_id,
            "artifact_id": m.artifact_id, "device_name": d.name, "device_kind": d.kind,
            "device_tags": list(d.tags or []), "context": m.context,
            "ttft_median_ms": m.ttft_median_ms, "ttft_stddev_ms": m.ttft_stddev_ms,
            "decode_median_ms": m.decode_median_ms, "decode_stddev_ms": m.decode_stddev_ms,
            "peak_rss_bytes": m.peak_rss_bytes, "oom": bool(m.oom), "error": m.error,
            "temp_before_c": m.temp_before_c, "temp_after_c": m.temp_after_c,
            "flagged_hot": bool(m.flagged_hot), "flagged_noisy": bool(m.flagged_noisy),
            "llama_cpp_commit": rt.get("llama_cpp_commit"), "threads": rt.get("threads"),
            "flash_attn": rt.get("flash_attn"), "cache_type_k": rt.get("cache_type_k"),
            "cache_type_v": rt.get("cache_type_v"), "n_gen": rt.get("n_gen"),
            "repetitions": rt.get("repetitions"), "created_at": m.created_at,
        }
        writer.writerow([_csv_value(row[k]) for k in columns])
    return Response(
        buf.getvalue(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="run-{run_id}-measurements.csv"'},
    )


@router.get("/candidates/{candidate_id}")
def get_candidate(candidate_id: CandidateId, session: SessionDep, _: AdminDep) -> CandidateDetail:
    """A candidate with its genome, arch, analytic costs, proxy metrics, artifacts (download
    links) and every measurement (spread, samples, temperatures, device)."""
    from star.search import store as search_store

    c = repo.get_candidate(session, candidate_id)
    rows = search_store.measurements_of_candidates(session, [c.id])[c.id]
    gen = session.get(Generation, c.generation_id) if c.generation_id is not None else None
    art_ids = {a.id for a in repo.list_artifacts(session, candidate_id=c.id, limit=1000)}
    art_ids |= {r.measurement.artifact_id for r in rows}
    arts = session.scalars(select(Artifact).where(Artifact.id.in_(sorted(art_ids)))).all()
    pre = (c.analytic_costs or {}).get("prescreen") or {}
    measurements = []
    for r in rows:
        m = r.measurement
        measurements.append(MeasurementDetail(
            id=m.id, job_id=m.job_id, artifact_id=m.artifact_id, device_id=m.device_id,
            device_name=r.device.name, device_kind=r.device.kind,
            device_tags=list(r.device.tags), context=m.context,
            ttft_median_ms=m.ttft_median_ms, ttft_stddev_ms=m.ttft_stddev_ms,
            ttft_samples_ms=list(m.ttft_samples_ms) if m.ttft_samples_ms is not None else None,
            decode_median_ms=m.decode_median_ms, decode_stddev_ms=m.decode_stddev_ms,
            decode_samples_ms=(list(m.decode_samples_ms)
                               if m.decode_samples_ms is not None else None),
            peak_rss_bytes=m.peak_rss_bytes, oom=m.oom, error=m.error,
            temp_before_c=m.temp_before_c, temp_after_c=m.temp_after_c, thermal=m.thermal,
            runtime=m.runtime, flagged_hot=m.flagged_hot, flagged_noisy=m.flagged_noisy,
            created_at=m.created_at,
        ))
    base = candidate_public(c).model_dump()
    return CandidateDetail(
        **base,
        generation=gen.index if gen is not None else None,
        arch=pre.get("arch") or (c.arch_spec or {}).get("arch"),
        artifacts=[ArtifactLink(id=a.id, sha256=a.sha256, size_bytes=a.size_bytes,
                                format=a.format, quant=a.quant,
                                url=f"{API_PREFIX}/artifacts/{a.id}/content") for a in arts],
        measurements=measurements,
    )
