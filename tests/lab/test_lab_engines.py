"""Search engines inside the coordinator (star.lab.engines): a run launched over REST outlives
the process that drives it.

- a coordinator shut down mid-run stops its engine at a phase boundary; the next coordinator on
  the same database adopts the run and finishes it, exporting and enqueueing nothing twice;
- ``POST /runs/{id}/stop`` stops a run for good (no coordinator adopts it) and
  ``POST /runs/{id}/resume`` continues it;
- which runs count as orphaned, and that two coordinators never both claim one.

The engines here measure on a registered x86 device that no agent serves: every generation ends
at its (short) deadline, which keeps each run a few seconds long and every step real.
(The SIGKILL of a coordinator subprocess, with real agents, is tests/e2e/test_search_e2e.py.)
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from star.db import Database, repo
from star.db.models import RunStatus
from star.db.repo import lifecycle
from star.db.snapshots import RunSnapshot
from star.db.store import ArtifactStore
from star.lab.engines import DRIVER, SHUTDOWN, EngineSupervisor
from tests.factories import (
    ThreadServer,
    admin_headers,
    api,
    database_url,
    drop_database,
    make_device,
    make_settings,
    migrated_database,
)
from tests.lab.conftest import Lab, start_lab
from tests.lab.test_lab_runs_api import config_doc
from tests.support.wait import wait_for

ENGINES = {"engine_heartbeat_s": 0.3, "adopt_interval_s": 0.2, "engine_stale_s": 3.0}


def doc(name: str) -> dict[str, Any]:
    return config_doc(name=name, generations=2, objectives=["params", "ttft_ms@64/x86"],
                      generation_deadline_s=1.0, poll_interval_s=0.1)


def run_of(db: Database, run_id: int) -> RunSnapshot:
    with db.session_scope(readonly=True) as s:
        return repo.get_run(s, run_id)


def phase(db: Database, run_id: int, index: int) -> str | None:
    with db.session_scope(readonly=True) as s:
        gens = repo.list_generations(s, run_id)
    return gens[index].state.get("phase") if len(gens) > index else None


def assert_nothing_twice(db: Database, run_id: int) -> None:
    with db.session_scope(readonly=True) as s:
        cands = repo.list_candidates(s, run_id=run_id)
        jobs = [j for j in repo.list_jobs(s) if j.candidate_id in {c.id for c in cands}]
        arts = [a for a in repo.list_artifacts(s, limit=1000)
                if a.candidate_id in {c.id for c in cands}]
    assert len({c.genome_hash for c in cands}) == len(cands)
    # one x86 job per candidate and flash-attention setting, one artifact per candidate
    keys = {(j.candidate_id, j.stage, j.flash_attn) for j in jobs}
    assert len(jobs) == len(keys) > 0
    assert {j.flash_attn for j in jobs} == {False, True}
    assert len(arts) == len({a.candidate_id for a in arts}) == len({j.candidate_id for j in jobs})


def test_shutdown_stops_at_a_phase_and_the_next_coordinator_adopts(tmp_path: Path) -> None:
    url = database_url("sqlite", tmp_path)
    db = migrated_database(url)
    make_device(db, "lap", "x86")
    settings = make_settings(tmp_path, url, **ENGINES)
    with ThreadServer(settings) as first:
        with httpx.Client(base_url=first.url, headers=admin_headers(), timeout=30) as admin:
            r = admin.post(api("/runs"), json=doc("survivor"))
            assert r.status_code == 201, r.text
            run_id = r.json()["id"]
            wait_for("generation 0 to wait on its jobs", lambda: phase(db, run_id, 0) in (
                "enqueued", "measured", "told"), 120)
            owner = run_of(db, run_id).owner
    run = run_of(db, run_id)  # the server has shut down
    assert (run.status, run.status_reason) == (RunStatus.SUSPENDED, SHUTDOWN), run
    assert (run.owner, run.driver, run.stop_requested) == (owner, DRIVER, False)

    with ThreadServer(settings) as second:
        with httpx.Client(base_url=second.url, headers=admin_headers(), timeout=30) as admin:
            run = wait_for("the adopted run to finish", lambda: (
                r := admin.get(api(f"/runs/{run_id}")).json())["status"] == "done" and r, 120)
    assert run["driver"] == DRIVER and run_of(db, run_id).owner != owner
    with db.session_scope(readonly=True) as s:
        gens = repo.list_generations(s, run_id)
    assert [g.state["told"] for g in gens] == [True, True]
    assert_nothing_twice(db, run_id)
    db.dispose()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from start_lab(tmp_path, **ENGINES)


def test_stopped_by_the_user_is_not_adopted_and_resume_continues(lab: Lab) -> None:
    lab.register("lap", "x86")
    r = lab.admin.post(api("/runs"), json=doc("paused"))
    run_id = r.json()["id"]
    wait_for("generation 0", lambda: phase(lab.db, run_id, 0) is not None, 120)
    r = lab.admin.post(api(f"/runs/{run_id}/stop"))
    assert r.status_code == 200 and r.json()["stop_requested"] is True
    run = wait_for("the stop", lambda: (
        r := lab.admin.get(api(f"/runs/{run_id}")).json())["status"] == "stopped" and r, 120)
    assert run["status_reason"] == "stop requested"
    sweeps = lab.app.state.engines.sweeps
    wait_for("five adoption sweeps", lambda: lab.app.state.engines.sweeps >= sweeps + 5, 120)
    assert lab.admin.get(api(f"/runs/{run_id}")).json()["status"] == "stopped"

    r = lab.admin.post(api(f"/runs/{run_id}/resume"))
    assert r.status_code == 202, r.text
    assert lab.admin.post(api(f"/runs/{run_id}/resume")).status_code == 409  # driven here
    wait_for("the resumed run to finish", lambda: lab.admin.get(
        api(f"/runs/{run_id}")).json()["status"] == "done", 120)
    assert lab.admin.post(api(f"/runs/{run_id}/resume")).status_code == 409  # done
    assert lab.admin.post(api("/runs/999/resume")).status_code == 404
    assert lab.client().post(api(f"/runs/{run_id}/stop")).status_code == 401
    assert_nothing_twice(lab.db, run_id)


def test_which_runs_are_orphaned(tmp_path: Path) -> None:
    db = migrated_database(database_url("sqlite", tmp_path))
    sup = EngineSupervisor(db, ArtifactStore(tmp_path / "a"), stale_after_s=60)
    now = datetime.now(UTC).replace(tzinfo=None)
    fresh, stale = now, now - timedelta(seconds=61)
    alive = f"{socket.gethostname()}:{os.getpid()}:x"
    dead = f"{socket.gethostname()}:{_dead_pid()}:x"

    def run(status: RunStatus | None, *, driver: str = DRIVER, owner: str = "elsewhere:1:x",
            beat: datetime | None = fresh, stop: bool = False,
            config: dict[str, Any] | None = None) -> RunSnapshot:
        return RunSnapshot(1, "r", {"search": {}} if config is None else config, 0, None,
                           status=status, owner=owner, driver=driver, heartbeat_at=beat,
                           stop_requested=stop)

    running = RunStatus.RUNNING
    assert not sup.orphaned(run(running), now)  # heard from just now
    assert sup.orphaned(run(running, beat=stale), now)  # silent for too long
    assert sup.orphaned(run(running, owner=dead), now)  # its process is gone (this host)
    assert not sup.orphaned(run(running, owner=alive), now)
    assert not sup.orphaned(run(running, driver="cli", beat=stale), now)  # its user resumes
    assert not sup.orphaned(run(running, beat=stale, stop=True), now)  # stopped, not adopted
    assert sup.orphaned(run(RunStatus.SUSPENDED), now)  # its coordinator shut down
    assert not sup.orphaned(run(RunStatus.SUSPENDED, stop=True), now)
    assert not sup.orphaned(run(RunStatus.STOPPED), now)  # a user stopped it: a user resumes
    assert not sup.orphaned(run(RunStatus.DONE, beat=stale), now)
    assert not sup.orphaned(run(RunStatus.FAILED, beat=stale), now)
    assert not sup.orphaned(run(running, beat=stale, config={}), now)  # not a search run
    db.dispose()


def suspended_run(db: Database, name: str, owner: str) -> RunSnapshot:
    with db.session_scope() as s:
        made = repo.create_run(s, name=name, seed=0, config={"search": {}})
        lifecycle.start(s, run_id=made.id, owner=owner, driver=DRIVER)
        return lifecycle.finish(s, run_id=made.id, status=RunStatus.SUSPENDED, reason=SHUTDOWN)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_racing_coordinators_never_both_claim_a_run(tmp_path: Path, backend: str) -> None:
    url = database_url(backend, tmp_path)
    db = migrated_database(url)
    try:
        run = suspended_run(db, "orphan", "gone:1:x")
        supervisors = [EngineSupervisor(db, ArtifactStore(tmp_path / "a")) for _ in range(6)]
        start = threading.Barrier(len(supervisors))
        claims: dict[str, bool] = {}

        def claim(i: int) -> None:
            start.wait()  # all at once
            claims[f"c{i}:1:x"] = supervisors[i].claim(run.id, f"c{i}:1:x")

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(supervisors))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        winners = [owner for owner, won in claims.items() if won]
        assert len(claims) == len(supervisors) and len(winners) == 1, claims
        now = run_of(db, run.id)
        assert now.status is RunStatus.RUNNING and now.owner == winners[0]
        late = EngineSupervisor(db, ArtifactStore(tmp_path / "a"))  # and after the race
        assert late.claim(run.id, "late:1:x") is False
    finally:
        db.dispose()
        drop_database(url)


def test_a_stop_requested_while_no_engine_listens_survives_a_restart(tmp_path: Path) -> None:
    """The stop requested over REST is kept in its own column: a coordinator that finds the
    run's engine gone stops the run instead of adopting it (this stop used to be lost)."""
    db = migrated_database(database_url("sqlite", tmp_path))
    dead = f"{socket.gethostname()}:{_dead_pid()}:x"
    with db.session_scope() as s:  # a running run whose coordinator was killed ...
        made = repo.create_run(s, name="halt", seed=0, config={"search": {}})
        lifecycle.start(s, run_id=made.id, owner=dead, driver=DRIVER)
        lifecycle.request_stop(s, run_id=made.id)  # ... after a user asked it to stop
    sup = EngineSupervisor(db, ArtifactStore(tmp_path / "a"), stale_after_s=60)
    assert sup.adopt_once() == []  # the next coordinator starts: nothing adopted
    run = run_of(db, made.id)
    assert run.status is RunStatus.STOPPED and run.stop_requested is True
    assert "stop requested" in (run.status_reason or "")
    suspended = suspended_run(db, "suspended", dead)
    with db.session_scope() as s:
        lifecycle.request_stop(s, run_id=suspended.id)
    assert sup.adopt_once() == [] and run_of(db, suspended.id).status is RunStatus.SUSPENDED
    db.dispose()


def _dead_pid() -> int:
    """A pid that no process has now (a child that has exited and been reaped)."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_an_engine_whose_run_was_taken_over_stops_and_leaves_the_run_alone(
        tmp_path: Path) -> None:
    """An engine that was silent long enough to be adopted must not keep working, nor write
    "stopped" over the new owner's "running"."""
    from star.search.config import parse_search_config
    from star.search.engine import SearchEngine
    from tests.conftest import ROOT

    db = migrated_database(database_url("sqlite", tmp_path))
    make_device(db, "lap", "x86")
    config = parse_search_config({**doc("taken"), "generation_deadline_s": 600}, base_dir=ROOT)
    engine = SearchEngine.create(db, ArtifactStore(tmp_path / "a"), config, heartbeat_s=0.1)
    result: list[RunStatus] = []
    thread = threading.Thread(target=lambda: result.append(engine.run()), daemon=True)
    thread.start()
    wait_for("the engine to wait on its jobs",
             lambda: phase(db, engine.run_id, 0) == "enqueued", 60)
    with db.session_scope() as s:  # another coordinator adopts the run
        lifecycle.start(s, run_id=engine.run_id, owner="other:1:x", driver=DRIVER)
    thread.join(timeout=30)
    assert result == [RunStatus.STOPPED]
    run = run_of(db, engine.run_id)
    assert run.status is RunStatus.RUNNING and run.owner == "other:1:x"
    with db.session_scope() as s:  # the new owner's heartbeat is not stamped by the old one
        beat = lifecycle.heartbeat(s, run_id=engine.run_id, owner=engine.owner)
    assert beat.taken_over_by == "other:1:x" and "taken over" in (beat.reason() or "")
    db.dispose()
