"""The full STAR space through the lab: a search with ``runtime: executorch`` launched over REST
in a real coordinator exports every candidate to a .pte, a real x86 agent (`star agent run`)
advertises ExecuTorch, leases the .pte jobs and measures them with ``star-et-bench``, and the
frontier holds genomes that no stock llama.cpp architecture can run (linear attention, SSM and
short convolution in one model)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from star.db import repo
from star.db.models import Measurement
from star.export import UnsupportedGenome, check_exportable
from star.genome import Genome, load_genome
from star.runtime.executorch import RunnerInfo
from star.search.frontier import run_frontier
from tests.conftest import ROOT
from tests.factories import api, coordinator_process
from tests.search.conftest import DEPLOY, PROXY
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow

MIXED = ROOT / "tests/executorch/data/mixed-all-operators.yaml"
LINEAR = ROOT / "genomes/hybrid-linear-attn-350m.yaml"


def llama_cpp_runs(genes: list[int]) -> bool:
    try:
        check_exportable(Genome(tuple(genes)).to_spec())
    except UnsupportedGenome:
        return False
    return True


def test_an_executorch_search_measures_pte_jobs_and_fronts_genomes_llama_cpp_cannot_run(
    tmp_path: Path, et_runner: RunnerInfo
) -> None:
    assert not llama_cpp_runs(list(load_genome(MIXED).genes))  # the premise
    assert not llama_cpp_runs(list(load_genome(LINEAR).genes))
    db, server = coordinator_process(tmp_path, lease_seconds=120.0)
    admin = server.admin(timeout_s=60)
    agent = None
    log = tmp_path / "agent.log"
    try:
        r = admin.post(api("/devices"), json={"name": "lap", "kind": "x86"})
        assert r.status_code == 201, r.text
        env = {
            **os.environ, "PYTHONPATH": str(ROOT), "STAR_COORDINATOR_URL": server.url,
            "STAR_DEVICE_TOKEN": r.json()["token"], "STAR_DATA_DIR": str(tmp_path / "agent"),
            "STAR_CONFIG": str(tmp_path / "absent.yaml"), "STAR_AGENT__POLL_INTERVAL_S": "0.2",
            "STAR_AGENT__HEARTBEAT_INTERVAL_S": "1", "STAR_AGENT__THREADS": "1",
            "STAR_AGENT__QUIET_TIMEOUT_S": "0.5", "STAR_AGENT__QUIET_SAMPLE_S": "0.25",
        }  # fmt: skip
        with log.open("wb") as out:
            agent = subprocess.Popen(
                [sys.executable, "-m", "star.cli", "agent", "run", "--device", "lap"],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        wait_for("the agent advertises executorch", lambda: "executorch" in (
            admin.get(api("/devices/lap")).json().get("properties") or {}).get("runtimes", []),
            120, on_timeout=lambda: log.read_text(errors="replace"))
        doc = {
            "name": "open", "seed": 3, "population": 2, "generations": 1,
            "base_genome": str(MIXED), "seed_genomes": [str(MIXED), str(LINEAR)],
            "deploy_scale": DEPLOY, "runtime": "executorch", "pte_quant": "fp32",
            "contexts": [64, 128], "repetitions": 1, "n_gen": 4,
            "objectives": ["quality", "decode_ms@128/x86"],
            "operators": {"layers": [2, 6], "surrogate": False}, "proxy": PROXY,
            "poll_interval_s": 0.2, "generation_deadline_s": 900,
        }  # fmt: skip
        r = admin.post(api("/runs"), json=doc)
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]

        def status() -> str:
            return str(admin.get(api(f"/runs/{run_id}")).json()["status"])

        wait_for("the executorch run", lambda: status() in ("done", "failed"), 1200,
                 on_timeout=lambda: log.read_text(errors="replace")[-4000:])
        assert status() == "done", admin.get(api(f"/runs/{run_id}")).text
    finally:
        if agent is not None and agent.poll() is None:
            agent.terminate()
            agent.wait(timeout=30)
        admin.close()
        server.stop()

    report = run_frontier(db, "open")
    assert report.runtime == "executorch"
    assert report.front, report
    with db.session_scope(readonly=True) as s:
        genomes = {c.genome_hash: c.genome["genes"]
                   for c in repo.list_candidates(s, run_id=run_id)}
        rows = s.query(Measurement).all()
    assert rows and all(m.runtime["runtime"] == "executorch" for m in rows)
    assert all(m.runtime["delegate"] == "xnnpack" for m in rows)
    assert all(m.decode_median_ms and m.decode_median_ms > 0 for m in rows)
    assert all(not llama_cpp_runs(genomes[p.genome_id]) for p in report.front)
    db.dispose()
