"""The real x86 agent (`star agent run`, a subprocess) with the pinned llama-bench on a tiny GGUF,
against a live coordinator: a job measured end to end, and the agent killed mid-job (the job is
requeued after its lease expires and measured exactly once by the next agent).

Slow: the first run on a host builds llama.cpp (star.runtime.ensure_runtime, ~3 min).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from star.runtime import RuntimeInfo, ensure_runtime
from tests.factories import ROOT, api
from tests.lab.conftest import Lab
from tests.support.procs import in_session
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime() -> RuntimeInfo:
    return ensure_runtime()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from tests.runtime.tiny_gguf import TinyConfig, write_tiny_gguf

    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    config = TinyConfig(vocab=1024, d_model=128, n_layers=2, n_head=4, n_head_kv=4, ffn=256,
                        context_length=4096)  # fmt: skip
    return write_tiny_gguf(path, config).read_bytes()


def _job(lab: Lab, job_id: int) -> dict[str, Any]:
    return lab.admin.get(api(f"/jobs/{job_id}")).json()  # type: ignore[no-any-return]


def _agent(lab: Lab, name: str, token: str, runtime: RuntimeInfo, base: Path, *extra: str):  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STAR_CONFIG": str(base / "absent.yaml"),
        "STAR_DATA_DIR": str(base),
        "STAR_COORDINATOR_URL": lab.url,
        "STAR_DEVICE_TOKEN": token,
        "STAR_AGENT__LLAMA_BENCH_PATH": str(runtime.llama_bench),
        "STAR_AGENT__THREADS": "1",
        "STAR_AGENT__HEARTBEAT_INTERVAL_S": "0.5",
        "STAR_AGENT__POLL_INTERVAL_S": "0.2",
        # the quiet-machine wait runs, but a shared test host is never quiet: keep it short
        "STAR_AGENT__QUIET_TIMEOUT_S": "0.5",
        "STAR_AGENT__QUIET_SAMPLE_S": "0.25",
    }
    cmd = [sys.executable, "-c", "from star.cli.main import main; main()",
           "agent", "run", "--device", name, *extra]  # fmt: skip
    return subprocess.Popen(
        cmd, env=env, cwd=ROOT, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_x86_agent_measures_a_job_end_to_end(
    lab: Lab, runtime: RuntimeInfo, tiny_gguf: bytes, tmp_path: Path
) -> None:
    token = lab.register("lap")
    art = lab.upload(tiny_gguf)
    job = lab.job(art["id"], contexts=[64, 256], repetitions=2, n_gen=4)
    agent = _agent(lab, "lap", token, runtime, tmp_path, "--max-jobs", "1")
    out, _ = agent.communicate(timeout=300)
    assert agent.returncode == 0, out
    assert _job(lab, job["id"])["state"] == "done", out
    rows = lab.admin.get(api("/measurements"), params={"job_id": job["id"]}).json()["data"]
    assert [r["context"] for r in rows] == [64, 256]
    for row in rows:
        assert row["ttft_median_ms"] > 0 and row["decode_median_ms"] > 0
        assert row["peak_rss_bytes"] > 1_000_000 and not row["oom"]
        assert row["runtime"]["llama_cpp_commit"] == runtime.commit
    assert rows[1]["ttft_median_ms"] > rows[0]["ttft_median_ms"]  # 4x the prompt
    device = lab.admin.get(api("/devices/lap")).json()
    assert device["properties"]["cpu"] and device["properties"]["ram_bytes"] > 0
    assert not list((tmp_path / "spool" / "lap").glob("*.json"))


def test_x86_agent_killed_mid_job_then_measured_exactly_once(
    lab: Lab, runtime: RuntimeInfo, tiny_gguf: bytes, tmp_path: Path
) -> None:
    victim = lab.register("victim")
    rescuer = lab.register("rescuer")
    art = lab.upload(tiny_gguf)
    job = lab.job(art["id"], contexts=[64, 512, 1024, 2048], repetitions=5, n_gen=16)
    a = _agent(lab, "victim", victim, runtime, tmp_path / "a")
    try:
        wait_for("agent A to lease the job", lambda: _job(lab, job["id"])["state"] == "leased", 60)
        wait_for("agent A's llama-bench to run", lambda: in_session(a.pid, "llama-bench"), 60)
        os.killpg(a.pid, signal.SIGKILL)  # the agent dies mid-job
        a.wait(timeout=30)
        wait_for("its llama-bench to die with it", lambda: not in_session(a.pid, "llama-bench"),
                 30)
    finally:
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGKILL)
    assert _job(lab, job["id"])["state"] == "leased"
    wait_for("the lease to expire and the job to be requeued",
             lambda: _job(lab, job["id"])["state"] == "queued", 30)
    assert _job(lab, job["id"])["attempts"] == 1
    b = _agent(lab, "rescuer", rescuer, runtime, tmp_path / "b", "--max-jobs", "1")
    out, _ = b.communicate(timeout=600)
    assert b.returncode == 0, out
    done = _job(lab, job["id"])
    assert done["state"] == "done" and done["attempts"] == 2  # the killed one and this one
    rows = lab.admin.get(api("/measurements"), params={"job_id": job["id"]}).json()["data"]
    assert sorted(r["context"] for r in rows) == [64, 512, 1024, 2048]  # measured exactly once
    rescuer_id = lab.admin.get(api("/devices/rescuer")).json()["id"]
    assert {r["device_id"] for r in rows} == {rescuer_id}


def test_process_deadline_grows_with_context_so_a_long_prefill_is_not_cut_off() -> None:
    from device_agents.x86 import SECONDS_PER_RUN, process_deadline_s

    assert process_deadline_s([512, 4096], 2) == SECONDS_PER_RUN * 3  # warm-up + 2 runs
    # 8x the context: at least 8x the time (a 32K prefill with flash attention off takes
    # minutes on a laptop; the old flat 120 s cut it off)
    assert process_deadline_s([32768], 1) >= 8 * process_deadline_s([4096], 1)
