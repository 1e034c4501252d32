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
from pathlib import Path
from typing import Any

from device_agents.agent import Agent
from device_agents.client import Backoff, CoordinatorClient, CoordinatorUnavailable
from device_agents.protocol import ResultAck, ResultSubmission
from device_agents.spool import Spool
from tests.agents.fake_agent import FakeRunner
from tests.factories import ROOT, api, coordinator_process
from tests.lab.conftest import Lab
from tests.support.wait import wait_for


def _job(lab: Lab, job_id: int) -> dict[str, Any]:
    return lab.admin.get(api(f"/jobs/{job_id}")).json()  # type: ignore[no-any-return]


class CountingClient(CoordinatorClient):
    """Counts the result submissions that found no coordinator: the agent's delivery tries."""

    unanswered_results = 0

    def submit_result(self, job_id: int, submission: ResultSubmission) -> ResultAck:
        try:
            return super().submit_result(job_id, submission)
        except CoordinatorUnavailable:
            self.unanswered_results += 1
            raise


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
        marker = tmp_path / "a" / "work" / f"measuring-{job['id']}"
        # a fresh interpreter importing the agent, registering and leasing: seconds on a quiet
        # box, more beside other work (the agent then measures for 30 s, so nothing is missed)
        wait_for("agent A to start measuring", marker.exists, 60)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
    finally:
        if a.poll() is None:
            a.kill()
    assert _job(lab, job["id"])["state"] == "leased"
    # Lease 2 s, reaper every 0.2 s: the job comes back with one failed attempt.
    wait_for("the reaper to requeue the job", lambda: _job(lab, job["id"])["state"] == "queued", 10)
    assert _job(lab, job["id"])["attempts"] == 1
    b = spawn_agent(lab.url, token_b, tmp_path / "b", delay=0.2)
    try:
        wait_for("agent B to finish the job", lambda: _job(lab, job["id"])["state"] == "done", 20)
    finally:
        b.terminate()
        b.wait(timeout=10)
    rows = lab.admin.get(api("/measurements"), params={"job_id": job["id"]}).json()["data"]
    assert len(rows) == 2  # one per context: measured exactly once
    devices = {d["name"]: d["id"] for d in lab.admin.get(api("/devices")).json()["data"]}
    assert {r["device_id"] for r in rows} == {devices["rescuer"]}


def test_coordinator_restarted_mid_job_gets_the_spooled_result_once(tmp_path: Path) -> None:
    db, server = coordinator_process(tmp_path, lease_seconds=30.0, reaper_interval_s=0.2)
    db.dispose()
    admin = server.admin(timeout_s=10)
    agent: Agent | None = None
    thread: threading.Thread | None = None
    try:
        token = admin.post(api("/devices"), json={"name": "lap", "kind": "x86"}).json()["token"]
        art = admin.post(api("/artifacts"), params={"quant": "f32"}, content=b"GGUF-restart").json()
        job = admin.post(
            api("/jobs"), json={"artifact_id": art["id"], "contexts": [64, 128], "device": "lap"}
        ).json()
        runner = FakeRunner(delay_s=2.0, marker_dir=tmp_path)
        client = CountingClient(server.url, token, timeout_s=2)
        agent = Agent(
            client,
            runner,
            Spool(tmp_path / "spool"),
            tmp_path / "work",
            heartbeat_interval_s=0.2,
            poll_interval_s=0.1,
            backoff=Backoff(0.05, 0.4),
        )
        thread = threading.Thread(target=agent.run, kwargs={"max_jobs": 1})
        thread.start()
        wait_for("the measurement", (tmp_path / f"measuring-{job['id']}").exists, 20)
        server.kill()  # the coordinator dies while the agent measures
        spool = agent.spool
        wait_for("the result to be spooled", lambda: len(spool) == 1, 20)
        # the agent is retrying with back-off: it has tried to deliver the result (and found
        # no coordinator) more than once, and keeps it spooled meanwhile
        wait_for("two failed deliveries", lambda: client.unanswered_results >= 2, 20)
        assert len(spool) == 1
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
