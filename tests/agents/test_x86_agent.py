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
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from star.runtime import RuntimeInfo, ensure_runtime
from tests.factories import ROOT, api
from tests.lab.conftest import Lab

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


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


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
    assert lab.admin.get(api(f"/jobs/{job['id']}")).json()["state"] == "done", out
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
        _wait(lambda: lab.admin.get(api(f"/jobs/{job['id']}")).json()["state"] == "leased", 60,
              "agent A to lease the job")  # fmt: skip
        time.sleep(2.0)  # llama-bench is running now
        os.killpg(a.pid, signal.SIGKILL)  # the agent and its llama-bench die mid-job
        a.wait(timeout=30)
    finally:
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGKILL)
    assert lab.admin.get(api(f"/jobs/{job['id']}")).json()["state"] == "leased"
    _wait(lambda: lab.admin.get(api(f"/jobs/{job['id']}")).json()["state"] == "queued", 30,
          "the lease to expire and the job to be requeued")  # fmt: skip
    assert lab.admin.get(api(f"/jobs/{job['id']}")).json()["attempts"] == 1
    b = _agent(lab, "rescuer", rescuer, runtime, tmp_path / "b", "--max-jobs", "1")
    out, _ = b.communicate(timeout=600)
    assert b.returncode == 0, out
    done = lab.admin.get(api(f"/jobs/{job['id']}")).json()
    assert done["state"] == "done" and done["attempts"] == 2  # the killed one and this one
    rows = lab.admin.get(api("/measurements"), params={"job_id": job["id"]}).json()["data"]
    assert sorted(r["context"] for r in rows) == [64, 512, 1024, 2048]  # measured exactly once
    rescuer_id = lab.admin.get(api("/devices/rescuer")).json()["id"]
    assert {r["device_id"] for r in rows} == {rescuer_id}
