"""The device-measurement path: artifacts, one profile job per candidate and device class, the
engine waiting on the database, and objectives read back from measurement rows.

- with the coordinator's repository functions playing the agent (fast): a good result, an OOM, a
  failed job and a job nobody runs before the deadline -> one feasible candidate, three
  infeasible ones with their reasons stored;
- with a real coordinator and a real x86 agent thread running the pinned llama.cpp on the
  exported GGUFs, the engine crashing after it enqueued the jobs and a fresh engine resuming:
  no job is enqueued twice and every figure is a real measurement.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device_agents.schemas import ContextMeasurement
from star.db import Database, JobState, repo
from star.db.store import ArtifactStore
from star.search import store
from star.search.engine import SearchEngine
from star.search.evaluate import MISSING
from star.search.frontier import FrontierError, run_frontier
from star.search.store import RunStatus
from tests.factories import make_report
from tests.search.conftest import search_config

DEVICE_OBJECTIVES = {
    "objectives": ["ttft_ms@64/x86", "peak_rss_mb@128/x86", "params"],
    "budgets": [{"metric": "peak_rss_mb@128/x86", "max": 4096}],
    "generations": 1,
}


def generation0(db: Database, name: str) -> dict[str, Any]:
    with db.session_scope(readonly=True) as s:
        run = repo.get_run_by_name(s, name)
        return repo.list_generations(s, run.id)[0].state


def test_failed_oom_and_missing_measurements_are_infeasible(db: Database,
                                                            artifacts: ArtifactStore) -> None:
    with db.session_scope() as s:
        device, _ = repo.create_device(s, name="lap", kind="x86")
    outcome: dict[int, str] = {}

    def agent(index: int, phase: str) -> None:
        if phase != "enqueued":
            return
        with db.session_scope() as s:
            leases = [repo.lease_job(s, device=device, lease_seconds=60) for _ in range(3)]
        for lease, kind in zip(leases, ("ok", "oom", "fail"), strict=True):
            assert lease is not None
            outcome[lease.job.candidate_id] = kind  # type: ignore[index]
            with db.session_scope() as s:
                if kind == "fail":
                    repo.fail_job(s, job_id=lease.job.id, device_id=device.id,
                                  lease_token=lease.lease_token, reason="llama-bench exit 134",
                                  retry=False)
                    continue
                report = make_report(lease.artifact.sha256, lease.job.contexts, repetitions=1)
                if kind == "oom":
                    report = report.model_copy(update={"contexts": [
                        report.contexts[0], ContextMeasurement(context=128, oom=True)]})
                repo.submit_result(s, job_id=lease.job.id, device_id=device.id,
                                   lease_token=lease.lease_token,
                                   idempotency_key=f"k{lease.job.id}", report=report)

    cfg = search_config(name="dev", generation_deadline_s=1.5, **DEVICE_OBJECTIVES)
    engine = SearchEngine.create(db, artifacts, cfg, on_phase=agent)
    assert engine.run() is RunStatus.DONE
    state = generation0(db, "dev")
    with db.session_scope(readonly=True) as s:
        run = repo.get_run_by_name(s, "dev")
        cands = {c.genome_hash: c for c in repo.list_candidates(s, run_id=run.id)}
        jobs = repo.list_jobs(s)
        arts = repo.list_artifacts(s)
    assert len(jobs) == len(arts) == 4 == len(state["genome_ids"])  # one job per candidate
    assert {j.state for j in jobs} == {JobState.DONE, JobState.FAILED, JobState.CANCELLED}
    cancelled = [j for j in jobs if j.state is JobState.CANCELLED]
    assert cancelled and all(j.last_error == "cancelled at the generation deadline"
                             for j in cancelled)  # the reason is on the job row
    for art in arts:  # the GGUF is in the store, content-addressed
        assert artifacts.resolve(art.path).read_bytes()[:4] == b"GGUF"
    reasons = state["reasons"]
    for i, gid in enumerate(state["genome_ids"]):
        kind = outcome.get(cands[gid].id, "missing")
        F, G = state["F"][i], state["G"][i]
        if kind == "ok":
            assert gid not in reasons
            assert F[0] == 32.0 and F[1] == pytest.approx((100_000_000 + 128_000) / 2**20)
            assert F[2] == pytest.approx(cands[gid].analytic_costs["params"] / 1e6)
            assert G[-1] == 0.0 and G[0] < 0
        elif kind == "oom":
            assert reasons[gid] == "peak_rss_mb@128/x86: OOM at 128 tokens"
            assert F[1] == MISSING and G[0] == MISSING and G[-1] == 1.0
        elif kind == "fail":
            job = next(j for j in jobs if j.candidate_id == cands[gid].id)
            assert reasons[gid] == (f"ttft_ms@64/x86, peak_rss_mb@128/x86: job {job.id} failed: "
                                    "failed after 1 attempts: llama-bench exit 134")
        else:
            assert reasons[gid].endswith("was cancelled at the generation deadline"), reasons
        if kind != "ok":
            assert G[-1] == 1.0  # infeasible: pymoo ranks it by violation only

    # the frontier, from the same rows: only the measured candidate; per device or class
    ok = next(c for c in cands.values() if outcome.get(c.id) == "ok")
    assert [p.candidate_id for p in run_frontier(db, "dev").front] == [ok.id]
    assert [p.candidate_id for p in run_frontier(db, "dev", device="lap").front] == [ok.id]
    on_phone = run_frontier(db, "dev", device="android:s24")
    assert on_phone.front == [] and on_phone.objectives[0] == "ttft_ms@64/android:s24"
    assert all("no profile job" in p.reason for p in on_phone.points)
    with pytest.raises(FrontierError, match="--device: no device named 'ghost'"):
        run_frontier(db, "dev", device="ghost")


@pytest.fixture
def lab(tmp_path: Path, runtime: Any) -> Iterator[Any]:  # noqa: ARG001 - the pinned llama.cpp
    from tests.lab.conftest import start_lab

    yield from start_lab(tmp_path, lease_seconds=30.0, reaper_interval_s=0.5)


def test_real_x86_agent_measures_resumed_generation(lab: Any, tmp_path: Path) -> None:
    from device_agents.agent import Agent
    from device_agents.client import Backoff, CoordinatorClient
    from device_agents.spool import Spool
    from device_agents.x86 import X86Runner

    db: Database = lab.db
    artifacts = ArtifactStore(lab.settings.store_dir)  # the store the coordinator serves
    token = lab.register("lap")
    cfg = search_config(name="x86", generation_deadline_s=300, **DEVICE_OBJECTIVES)

    def crash(index: int, phase: str) -> None:
        if phase == "enqueued":
            raise KeyboardInterrupt  # the engine stops; its queued jobs stay

    with pytest.raises(KeyboardInterrupt):
        SearchEngine.create(db, artifacts, cfg, on_phase=crash).run()
    with db.session_scope(readonly=True) as s:
        queued = repo.list_jobs(s)
    assert len(queued) == 4 and {j.state for j in queued} == {JobState.QUEUED}

    agent = Agent(CoordinatorClient(lab.url, token, timeout_s=30), X86Runner(threads=1),
                  Spool(tmp_path / "spool"), tmp_path / "work", heartbeat_interval_s=1.0,
                  poll_interval_s=0.2, backoff=Backoff(0.05, 0.5))
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        engine = SearchEngine.open(db, artifacts, "x86")  # status "stopped": no --force needed
        assert engine.run() is RunStatus.DONE
    finally:
        agent.stop.set()
        thread.join(timeout=60)
    assert engine.exported == 0 and engine.enqueued == 0  # all reused from the crashed engine
    with db.session_scope(readonly=True) as s:
        jobs = repo.list_jobs(s)
        run = repo.get_run_by_name(s, "x86")
        meas = repo.list_measurements(s, run_id=run.id)
        cands = {c.id: c for c in repo.list_candidates(s, run_id=run.id)}
    assert [j.id for j in jobs] == [j.id for j in queued]  # nothing enqueued twice
    assert {j.state for j in jobs} == {JobState.DONE}
    assert len(meas) == 8 and {m.context for m in meas} == {64, 128}
    state = generation0(db, "x86")
    assert state["reasons"] == {}
    for m in meas:
        weights = cands[m.candidate_id].analytic_costs["weight_bytes"]["q8_0"]
        assert m.peak_rss_bytes is not None and m.peak_rss_bytes > weights
        assert m.ttft_median_ms is not None and m.ttft_median_ms > 0
        assert m.runtime["threads"] == 1 and m.runtime["repetitions"] == 1
    for F in state["F"]:
        assert all(0 < f < MISSING and math.isfinite(f) for f in F)
    with db.session_scope(readonly=True) as s:
        assert store.resolve_run(s, "x86").status is RunStatus.DONE
