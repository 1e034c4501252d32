"""The whole loop, every part real: a search launched over REST runs in a coordinator process,
which exports GGUFs that a real x86 agent (`star agent run`) and a real Android agent (`star
agent run`, adbutils -> a real adb server -> the emulated phone of tests/support) measure with
the pinned llama.cpp (on the phone: the static aarch64 build of `star runtime build --target
android-arm64`, pushed by the agent and run through qemu-aarch64); the coordinator is
SIGKILLed mid-generation (with its proxy-training workers), started again, adopts the run and
finishes it. The interrupted run must equal an uninterrupted run of the same seed, and lose or
repeat no measurement.

What "equal" means with real, noisy devices: the objectives are quality (real proxy training,
deterministic for a seed) and params (analytic); the devices enter through budgets on their
measured TTFT and peak RSS, generous enough that a measured candidate meets them and strict in
that an unmeasured one is infeasible. pymoo ranks feasible candidates by F alone, so the same
seed must ask the same genomes, tell the same F, and give the same frontier, whatever the
milliseconds were.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from star.db import Database, JobState, repo
from star.db.models import RunStatus
from star.runtime import RuntimeInfo
from star.runtime.cross import PhoneRuntime
from star.search import store
from star.search.frontier import run_frontier
from tests.conftest import ROOT
from tests.factories import api, coordinator_process
from tests.runtime.fixtures import (  # noqa: F401  (fixtures: the pinned llama.cpp, both builds)
    phone_runtime,
    runtime,
)
from tests.search.conftest import DEPLOY, PROXY
from tests.support.adb_server import AdbServer, adb_builds, connected_phone
from tests.support.emulated_phone import EmulatedPhone
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow

# what an agent logs when the coordinator does not answer (device_agents.agent)
UNAVAILABLE = re.compile(r"coordinator unavailable|failed \(will retry\)")
CONTEXTS = [64, 128]
BUDGETS = [  # met by any measured candidate; an unmeasured one breaks them
    {"metric": "ttft_ms@128/x86", "max": 60_000},
    {"metric": "peak_rss_mb@128/android", "max": 4_096},
]


def search_doc(name: str) -> dict[str, Any]:
    genome = str(ROOT / "genomes/lfm2-350m.yaml")
    return {
        "name": name, "seed": 11, "population": 4, "generations": 2,
        "base_genome": genome, "seed_genomes": [genome], "deploy_scale": DEPLOY,
        "quant": "q8_0", "contexts": CONTEXTS, "repetitions": 1, "n_gen": 4,
        "objectives": ["quality", "params"], "budgets": BUDGETS, "allowed_archs": ["lfm2"],
        # no surrogate: it learns the budgets' measured values (device noise), which would let
        # two runs ask different offspring; NSGA-II itself sees only feasibility here
        "operators": {"layers": [2, 6], "surrogate": False}, "proxy": PROXY,
        "poll_interval_s": 0.2, "generation_deadline_s": 600, "flash_attn": [False],
    }


class Agents:
    """`star agent run` subprocesses, their output in files (shown when a wait times out)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, device: str, env: dict[str, str]) -> None:
        log = self.tmp / f"agent-{device}.log"
        cmd = [sys.executable, "-m", "star.cli", "agent", "run", "--device", device]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                                    cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((device, proc, log))

    def unavailable(self) -> dict[str, int]:
        """Per agent, the lines of its log that say it found no coordinator and will retry
        (a lease, a heartbeat or a result delivery)."""
        return {device: len(UNAVAILABLE.findall(log.read_text(errors="replace")))
                for device, _, log in self.procs}

    def logs(self) -> str:
        parts = []
        for device, proc, log in self.procs:
            text = log.read_text(errors="replace")[-3000:]
            parts.append(f"--- agent {device} (exit {proc.poll()}) ---\n{text}")
        return "\n".join(parts)

    def stop(self) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _ in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def adb(tmp_path: Path) -> Iterator[AdbServer]:
    builds = adb_builds()
    if not builds:
        pytest.fail("no adb found: apt-get install -y adb (and pip install adbutils==2.12.0)")
    server = AdbServer(builds.get("wheel-36") or next(iter(builds.values()))).start()
    yield server
    server.stop()


@pytest.fixture
def phone(adb: AdbServer, runtime: RuntimeInfo) -> Iterator[EmulatedPhone]:  # noqa: F811
    # the phone sees only what the agent pushes to it, never the host's llama.cpp build
    with connected_phone(adb, hide_paths=(str(runtime.root),)) as emulated:
        yield emulated


def history(db: Database, name: str) -> list[dict[str, Any]]:
    with db.session_scope(readonly=True) as s:
        run = repo.get_run_by_name(s, name)
        return [g.state for g in repo.list_generations(s, run.id)]


def test_search_survives_a_killed_coordinator_and_matches_the_uninterrupted_run(
    tmp_path: Path, runtime: RuntimeInfo, adb: AdbServer, phone: EmulatedPhone,  # noqa: F811
    phone_runtime: PhoneRuntime,  # noqa: F811
) -> None:
    db, server = coordinator_process(tmp_path, lease_seconds=60.0, engine_heartbeat_s=0.5,
                                     adopt_interval_s=0.5)
    agents = Agents(tmp_path)
    admin = server.admin(timeout_s=60)
    try:
        tokens = {}
        for body in ({"name": "lap", "kind": "x86"},
                     {"name": "phone", "kind": "android", "serial": phone.serial}):
            r = admin.post(api("/devices"), json=body)
            assert r.status_code == 201, r.text
            tokens[body["name"]] = r.json()["token"]
        common = {
            "STAR_COORDINATOR_URL": server.url, "STAR_DATA_DIR": str(tmp_path / "agents"),
            "STAR_CONFIG": str(tmp_path / "absent.yaml"), "STAR_AGENT__POLL_INTERVAL_S": "0.2",
            "STAR_AGENT__HEARTBEAT_INTERVAL_S": "1", "STAR_AGENT__BACKOFF_CAP_S": "1",
            "STAR_AGENT__THREADS": "1", "ADBUTILS_ADB_PATH": "/bin/false",
            # the quiet-machine wait runs, but this shared host is never quiet: keep it short
            "STAR_AGENT__QUIET_TIMEOUT_S": "0.5", "STAR_AGENT__QUIET_SAMPLE_S": "0.25",
        }
        agents.start("lap", {**common, "STAR_DEVICE_TOKEN": tokens["lap"]})
        agents.start("phone", {
            **common, "STAR_DEVICE_TOKEN": tokens["phone"],
            "STAR_AGENT__ADB_PORT": str(adb.port),  # the phone build comes from the cache
            "STAR_ANDROID__THREADS": "1", "STAR_ANDROID__COOL_DOWN_TIMEOUT_S": "5",
        })

        def status(run_id: int) -> str:
            return admin.get(api(f"/runs/{run_id}")).json()["status"]

        # the uninterrupted run
        r = admin.post(api("/runs"), json=search_doc("straight"))
        assert r.status_code == 201, r.text
        straight = r.json()["id"]
        wait_for("the uninterrupted run", lambda: status(straight) in ("done", "failed"), 600,
                 on_timeout=agents.logs)
        assert status(straight) == "done", admin.get(api(f"/runs/{straight}")).text

        # the same run, its coordinator killed while generation 1 is being measured
        r = admin.post(api("/runs"), json=search_doc("killed"))
        killed = r.json()["id"]

        def measuring_generation_1() -> bool:
            with db.session_scope(readonly=True) as s:
                gens = repo.list_generations(s, killed)
                if len(gens) < 2:
                    return False
                ids = gens[1].state.get("genome_ids") or []
                cands = store.candidates_by_hash(s, run_id=killed, hashes=ids)
                jobs = [j for js in store.jobs_of_candidates(
                    s, [c.id for c in cands.values()]).values() for j in js]
            return any(j.state in (JobState.LEASED, JobState.DONE) for j in jobs)

        wait_for("generation 1 to be measured", measuring_generation_1, 600, on_timeout=agents.logs)
        before = agents.unavailable()
        server.kill()  # SIGKILL, the proxy-training workers with it
        with db.session_scope(readonly=True) as s:
            snap = repo.get_run(s, killed)
        assert snap.status is RunStatus.RUNNING  # nobody got to record anything
        dead_owner = snap.owner
        phase_at_kill = history(db, "killed")[1]["phase"]
        # the agents meet the dead coordinator, and retry (a result they finish is spooled)
        wait_for("both agents to find the coordinator gone", lambda: all(
            n > before[device] for device, n in agents.unavailable().items()), 60,
            on_timeout=agents.logs)
        server.start()  # same database, same port: it sees the dead owner and adopts the run
        wait_for("the adopted run", lambda: status(killed) in ("done", "failed"), 600,
                 on_timeout=agents.logs)
        run = admin.get(api(f"/runs/{killed}")).json()
        assert run["status"] == "done", run
        with db.session_scope(readonly=True) as s:
            assert repo.get_run(s, killed).owner != dead_owner
    finally:
        agents.stop()
        admin.close()
        server.stop()

    # the same genomes, objectives and feasibility, generation by generation
    a, b = history(db, "straight"), history(db, "killed")
    assert phase_at_kill != "told"
    assert [s["genome_ids"] for s in a] == [s["genome_ids"] for s in b]
    assert [s["F"] for s in a] == [s["F"] for s in b]  # exact floats
    feasible = [[g[-1] <= 0 and all(x <= 0 for x in g) for g in s["G"]] for s in a]
    assert feasible == [[g[-1] <= 0 and all(x <= 0 for x in g) for g in s["G"]] for s in b]
    # infeasible only where the pre-screen refused the genome (no device time spent on it)
    for state, row in zip(b, feasible, strict=True):
        for gid, ok in zip(state["genome_ids"], row, strict=True):
            assert ok or state["reasons"][gid].startswith("runtime:"), state["reasons"]
    assert sum(map(sum, feasible)) >= 4
    front_a = sorted((p.genome_id, p.values["quality"], p.values["params"])
                     for p in run_frontier(db, "straight").front)
    front_b = sorted((p.genome_id, p.values["quality"], p.values["params"])
                     for p in run_frontier(db, "killed").front)
    assert front_a == front_b != []

    # every measurement real, none lost, none taken twice
    with db.session_scope(readonly=True) as s:
        devices = {d.id: d for d in repo.list_devices(s)}
        for name in ("straight", "killed"):
            run_ = repo.get_run_by_name(s, name)
            cands = repo.list_candidates(s, run_id=run_.id)
            ids = {c.id for c in cands}
            jobs = [j for j in repo.list_jobs(s) if j.candidate_id in ids]
            meas = repo.list_measurements(s, run_id=run_.id)
            screened = [c for c in cands if c.analytic_costs["prescreen"]["ok"]]
            assert len(jobs) == 2 * len(screened)  # one per candidate and device class
            assert {j.state for j in jobs} == {JobState.DONE}
            assert len(meas) == len(jobs) * len(CONTEXTS)
            seen = {(m.candidate_id, devices[m.device_id].kind, m.context) for m in meas}
            assert len(seen) == len(meas)
            for m in meas:
                assert m.ttft_median_ms is not None and m.ttft_median_ms > 0
                assert m.decode_median_ms is not None and m.decode_median_ms > 0
                assert m.peak_rss_bytes is not None and m.peak_rss_bytes > 1_000_000
                assert m.runtime["llama_cpp_commit"] == runtime.commit
                assert m.tries >= 1 and m.conditions is not None  # what the agent waited for
                if devices[m.device_id].kind == "android":
                    assert m.temp_before_c is not None  # read from the phone's thermal zones
                    assert m.runtime["build_flags"] == list(phone_runtime.build_flags)
                else:
                    assert m.runtime["build_flags"] == list(runtime.build_flags)
    db.dispose()
