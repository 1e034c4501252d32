"""Agents against a live coordinator, measuring with the scripted llama-bench of tests/support:
a noisy figure re-measured (tries and conditions stored), a stopped agent stopping the benchmark
it started (in-process and `star agent run` with SIGTERM or SIGKILL) and giving its job back,
and a phone binary of another llama.cpp commit refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from device_agents.agent import Agent, RuntimeMismatch
from device_agents.android import DeviceProfile
from device_agents.android_runner import AndroidRunner
from device_agents.client import Backoff, CoordinatorClient
from device_agents.quiet import QuietThresholds
from device_agents.spool import Spool
from device_agents.x86 import X86Runner
from star.db.repo.results import list_measurements
from tests.factories import ROOT, api
from tests.lab.conftest import Lab
from tests.support.adb_server import AdbServer
from tests.support.emulated_phone import EmulatedPhone
from tests.support.fake_llama_bench import write_fake_llama_bench
from tests.support.procs import sleepers, stop_owner
from tests.support.wait import wait_for

NO_NEIGHBOURS = QuietThresholds(max_load_1m=None, max_steal_pct=None, max_other_cpu_pct=None,
                                timeout_s=5, sample_s=0.1)  # fmt: skip


@pytest.fixture
def tiny_model(tmp_path: Path) -> bytes:
    from tests.runtime.tiny_gguf import SMALLEST, write_tiny_gguf

    return write_tiny_gguf(tmp_path / "tiny.gguf", SMALLEST).read_bytes()


def _agent(lab: Lab, token: str, runner: object, tmp_path: Path) -> Agent:
    return Agent(CoordinatorClient(lab.url, token, timeout_s=10), runner,  # type: ignore[arg-type]
                 Spool(tmp_path / "spool"), tmp_path / "work", heartbeat_interval_s=0.3,
                 poll_interval_s=0.2, backoff=Backoff(0.05, 0.5))  # fmt: skip


def _job(lab: Lab, job_id: int) -> dict[str, object]:
    return lab.admin.get(api(f"/jobs/{job_id}")).json()  # type: ignore[no-any-return]


def test_x86_agent_remeasures_a_noisy_context_and_stores_tries_and_conditions(
    lab: Lab, tiny_model: bytes, tmp_path: Path
) -> None:
    token = lab.register("lap", "x86")
    job = lab.job(lab.upload(tiny_model)["id"], contexts=[64], repetitions=3, n_gen=2)
    fake = write_fake_llama_bench(tmp_path / "bin", noise_pct=[0, 80, 0, 0])  # try 1's decode
    agent = _agent(lab, token, X86Runner(llama_bench_path=fake, threads=1, quiet=NO_NEIGHBOURS),
                   tmp_path)  # fmt: skip
    assert agent.run(max_jobs=1) == 1
    assert _job(lab, job["id"])["state"] == "done"
    with lab.db.session_scope(readonly=True) as s:
        (row,) = list_measurements(s, job_id=job["id"])
    assert row.tries == 2 and row.flagged_noisy is False
    assert row.conditions is not None and row.conditions["quiet"] is True
    assert row.conditions["load_1m"] is not None and row.conditions["other_cpu_pct"] is not None
    assert "kept try 2 of 2" in row.conditions["note"]


def test_stopping_the_agent_stops_its_benchmark_and_gives_the_job_back(
    lab: Lab, tiny_model: bytes, tmp_path: Path
) -> None:
    token = lab.register("lap", "x86")
    job = lab.job(lab.upload(tiny_model)["id"], contexts=[64], repetitions=1, n_gen=2)
    fake = write_fake_llama_bench(tmp_path / "bin", mode="sleep", sleep_s=97.25)
    agent = _agent(lab, token, X86Runner(llama_bench_path=fake, threads=1), tmp_path)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    wait_for("the benchmark to run", lambda: sleepers("97.25"), 30)
    agent.shutdown()
    thread.join(30)
    assert not thread.is_alive()
    wait_for("the benchmark to end", lambda: not sleepers("97.25"), 10)
    state = _job(lab, job["id"])
    assert state["state"] == "queued" and "stopped" in str(state["last_error"])


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_star_agent_run_leaves_no_benchmark_behind(
    lab: Lab, tiny_model: bytes, tmp_path: Path, how: signal.Signals
) -> None:
    token = lab.register("lap", "x86")
    job = lab.job(lab.upload(tiny_model)["id"], contexts=[64], repetitions=1, n_gen=2)
    marker = f"{91 + how / 100:.2f}"  # a sleep only this test's benchmark runs
    fake = write_fake_llama_bench(tmp_path / "bin", mode="sleep", sleep_s=float(marker))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STAR_CONFIG": str(tmp_path / "absent.yaml"),
           "STAR_DATA_DIR": str(tmp_path), "STAR_COORDINATOR_URL": lab.url,
           "STAR_DEVICE_TOKEN": token, "STAR_AGENT__LLAMA_BENCH_PATH": str(fake),
           "STAR_AGENT__THREADS": "1", "STAR_AGENT__POLL_INTERVAL_S": "0.2",
           "STAR_AGENT__QUIET_WAIT": "false"}  # fmt: skip
    agent = subprocess.Popen([sys.executable, "-m", "star.cli", "agent", "run", "--device", "lap"],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)  # fmt: skip
    output = stop_owner(agent, how, marker, bench="the benchmark", by="its agent")
    if how == signal.SIGTERM:
        assert agent.returncode == 0, output
        state = _job(lab, job["id"])
        assert state["state"] == "queued" and "stopped" in str(state["last_error"])


def test_phone_binary_of_another_commit_gives_the_job_back_and_stops_the_agent(
    lab: Lab, adb_server: AdbServer, emulated_phone: EmulatedPhone, tiny_model: bytes,
    tmp_path: Path,
) -> None:  # fmt: skip
    token = lab.register("s24", "android", serial=emulated_phone.serial)
    job = lab.job(lab.upload(tiny_model)["id"], device_kind="android", contexts=[64],
                  repetitions=1, n_gen=2)  # fmt: skip
    fake = write_fake_llama_bench(tmp_path / "bin", commit="1234567ab")
    runner = AndroidRunner(adb_server.client(), emulated_phone.serial, files=[fake],
                           profile=DeviceProfile(threads=1, cpu_mask="0x1", poll_interval_s=0.1),
                           expected_commit="0c1e57098")  # fmt: skip
    with pytest.raises(RuntimeMismatch, match="1234567ab.*0c1e57098"):
        _agent(lab, token, runner, tmp_path).run()
    state = _job(lab, job["id"])
    assert state["state"] == "queued" and "runtime mismatch" in str(state["last_error"])
    assert not any("./job.sh" in s for s in emulated_phone.services)
