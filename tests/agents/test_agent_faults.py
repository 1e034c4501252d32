"""Fault cases with real processes: an agent killed mid-job, a coordinator restarted mid-job.

The agent here is a real process with a fake runner (tests/agents/fake_agent.py); the same cases
with llama-bench and a real GGUF are in test_x86_agent.py (slow).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from device_agents.agent import Agent
from device_agents.client import Backoff, CoordinatorClient
from device_agents.spool import Spool
from tests.agents.fake_agent import FakeRunner
from tests.factories import (
    ROOT,
    ProcessServer,
    admin_headers,
    api,
    database_url,
    make_settings,
    migrated_database,
    settings_env,
)
from tests.lab.conftest import Lab


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def spawn_agent(url: str, token: str, base: Path, delay: float) -> subprocess.Popen:
    (base / "work").mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "tests.agents.fake_agent", url, token,
        str(base / "spool"), str(base / "work"), "--delay", str(delay),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)


def test_agent_killed_mid_job_is_requeued_and_measured_once(lab: Lab, tmp_path: Path) -> None:
    token_a = lab.register("victim")
    token_b = lab.register("rescuer")
    art = lab.upload(b"GGUF-kill-test")
    job = lab.job(art["id"], max_attempts=3)
    a = spawn_agent(lab.url, token_a, tmp_path / "a", delay=30)
    try:
        wait_for(lambda: (tmp_path / "a" / "work" / f"measuring-{job['id']}").exists(), 20,
                 "agent A to start measuring")  # fmt: skip
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
    finally:
        if a.poll() is None:
            a.kill()
    assert lab.admin.get(api(f"/jobs/{job['id']}")).json()["state"] == "leased"
    # Lease 2 s, reaper every 0.2 s: the job comes back with one failed attempt.
    wait_for(lambda: lab.admin.get(api(f"/jobs/{job['id']}")).json()["state"] == "queued", 10,
             "the reaper to requeue the job")  # fmt: skip
    assert lab.admin.get(api(f"/jobs/{job['id']}")).json()["attempts"] == 1
    b = spawn_agent(lab.url, token_b, tmp_path / "b", delay=0.2)
    try:
        wait_for(lambda: lab.admin.get(api(f"/jobs/{job['id']}")).json()["state"] == "done", 20,
                 "agent B to finish the job")  # fmt: skip
    finally:
        b.terminate()
        b.wait(timeout=10)
    rows = lab.admin.get(api("/measurements"), params={"job_id": job["id"]}).json()["data"]
    assert len(rows) == 2  # one per context: measured exactly once
    devices = {d["name"]: d["id"] for d in lab.admin.get(api("/devices")).json()["data"]}
    assert {r["device_id"] for r in rows} == {devices["rescuer"]}


def test_coordinator_restarted_mid_job_gets_the_spooled_result_once(tmp_path: Path) -> None:
    url = database_url("sqlite", tmp_path)
    migrated_database(url).dispose()
    settings = make_settings(tmp_path, url, lease_seconds=30.0, reaper_interval_s=0.2)
    server = ProcessServer(settings_env(settings)).start()
    admin = httpx.Client(base_url=server.url, headers=admin_headers(), timeout=10)
    agent: Agent | None = None
    thread: threading.Thread | None = None
    try:
        token = admin.post(api("/devices"), json={"name": "lap", "kind": "x86"}).json()["token"]
        art = admin.post(api("/artifacts"), params={"quant": "f32"}, content=b"GGUF-restart").json()
        job = admin.post(
            api("/jobs"), json={"artifact_id": art["id"], "contexts": [64, 128], "device": "lap"}
        ).json()
        runner = FakeRunner(delay_s=2.0, marker_dir=tmp_path)
        agent = Agent(
            CoordinatorClient(server.url, token, timeout_s=2),
            runner,
            Spool(tmp_path / "spool"),
            tmp_path / "work",
            heartbeat_interval_s=0.2,
            poll_interval_s=0.1,
            backoff=Backoff(0.05, 0.4),
        )
        thread = threading.Thread(target=agent.run, kwargs={"max_jobs": 1})
        thread.start()
        wait_for(lambda: (tmp_path / f"measuring-{job['id']}").exists(), 20, "the measurement")
        server.kill()  # the coordinator dies while the agent measures
        wait_for(lambda: len(agent.spool) == 1, 20, "the result to be spooled")  # type: ignore[union-attr]
        time.sleep(0.5)  # the agent is now retrying with back-off
        assert len(agent.spool) == 1
        server.start()  # same port, same database
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert len(agent.spool) == 0 and runner.measured == [job["id"]]
        done = admin.get(api(f"/jobs/{job['id']}")).json()
        assert done["state"] == "done" and done["attempts"] == 1  # the one that did it
        rows = admin.get(api("/measurements"), params={"job_id": job["id"]}).json()
        assert rows["count"] == 2
    finally:
        if agent is not None:
            agent.stop.set()
        if thread is not None:
            thread.join(timeout=10)
        admin.close()
        server.stop()
