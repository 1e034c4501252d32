"""The agent loop against a live coordinator, with a fake runner: spool-before-report, delivery
at start-up, back-off while the coordinator is down, sha256 verification, a lost device."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from device_agents.agent import Agent
from device_agents.client import (
    ArtifactCorrupt,
    Backoff,
    CoordinatorClient,
    CoordinatorUnavailable,
    Stopped,
    retrying,
)
from device_agents.protocol import ArtifactRef, ResultSubmission
from device_agents.spool import Spool
from tests.agents.fake_agent import FakeRunner
from tests.factories import api, free_port, make_report
from tests.lab.conftest import Lab


def _agent(lab: Lab, token: str, tmp_path: Path, runner: FakeRunner | None = None) -> Agent:
    return Agent(
        CoordinatorClient(lab.url, token, timeout_s=5),
        runner or FakeRunner(),
        Spool(tmp_path / "spool"),
        tmp_path / "work",
        heartbeat_interval_s=0.2,
        poll_interval_s=0.1,
        backoff=Backoff(0.02, 0.2),
    )


def _job_state(lab: Lab, job_id: int) -> dict:  # type: ignore[type-arg]
    return lab.admin.get(api(f"/jobs/{job_id}")).json()


def test_agent_measures_reports_and_cleans_up(lab: Lab, tmp_path: Path) -> None:
    token = lab.register("lap")
    art = lab.upload(b"GGUF-fake-model")
    jobs = [lab.job(art["id"])["id"] for _ in range(2)]
    agent = _agent(lab, token, tmp_path)
    assert agent.run(max_jobs=2) == 2
    for job_id in jobs:
        assert _job_state(lab, job_id)["state"] == "done"
        rows = lab.admin.get(api("/measurements"), params={"job_id": job_id}).json()
        assert rows["count"] == 2
    assert len(agent.spool) == 0
    assert list((tmp_path / "work").iterdir()) == []  # the artifact was deleted
    device = lab.admin.get(api("/devices/lap")).json()
    assert device["properties"]["model"] == "fake" and device["online"] is True


def test_spooled_results_are_delivered_first_at_startup(lab: Lab, tmp_path: Path) -> None:
    token = lab.register("lap")
    art = lab.upload(b"GGUF-spooled")
    job = lab.job(art["id"])
    with lab.client(token) as http:
        spec = http.post(api("/agent/lease")).json()["job"]
    spool = Spool(tmp_path / "spool")
    submission = ResultSubmission(
        lease_token=spec["lease_token"],
        idempotency_key="spooled-key-1",
        report=make_report(art["sha256"], spec["contexts"]),
    )
    spool.put(spec["job_id"], submission)
    spool.put(spec["job_id"], submission)  # a duplicate (crash between put and remove)
    agent = _agent(lab, token, tmp_path)
    agent.register()
    assert agent.deliver_spool() == 1  # same key: stored once; the copy is acknowledged too
    assert len(spool) == 0
    assert _job_state(lab, job["id"])["state"] == "done"
    assert lab.admin.get(api("/measurements"), params={"job_id": job["id"]}).json()["count"] == 2


def test_refused_spool_entries_are_kept_aside(lab: Lab, tmp_path: Path) -> None:
    token = lab.register("lap")
    art = lab.upload(b"GGUF-refused")
    job = lab.job(art["id"])
    with lab.client(token) as http:
        spec = http.post(api("/agent/lease")).json()["job"]
    lab.admin.post(api(f"/jobs/{job['id']}/cancel"))
    spool = Spool(tmp_path / "spool")
    report = make_report(art["sha256"], spec["contexts"])
    spool.put(spec["job_id"], ResultSubmission(
        lease_token=spec["lease_token"], idempotency_key="refused-key", report=report
    ))  # fmt: skip
    agent = _agent(lab, token, tmp_path)
    assert agent.deliver_spool() == 0
    assert len(spool) == 0 and len(list((tmp_path / "spool" / "rejected").iterdir())) == 1


def test_backoff_retries_until_the_coordinator_answers() -> None:
    calls = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise CoordinatorUnavailable("down")
        return "ok"

    stop = threading.Event()
    assert retrying(flaky, backoff=Backoff(0.01, 0.04), stop=stop) == "ok"
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert all(0.004 <= g < 0.5 for g in gaps)
    backoff = Backoff(1.0, 8.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert max(delays) <= 8.0 and delays[0] <= 1.0 and delays[-1] >= 4.0  # capped, growing
    stop.set()
    with pytest.raises(Stopped):
        retrying(flaky, backoff=Backoff(), stop=stop)


def test_unreachable_coordinator_is_retried_not_fatal(lab: Lab, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = CoordinatorClient(dead, "t", timeout_s=1)
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    start = time.monotonic()
    with pytest.raises(Stopped):
        retrying(client.lease, backoff=Backoff(0.02, 0.1), stop=stop)
    assert 0.4 < time.monotonic() - start < 5


def test_download_is_verified_against_sha256(lab: Lab, tmp_path: Path) -> None:
    token = lab.register("lap")
    art = lab.upload(b"GGUF-genuine")
    client = CoordinatorClient(lab.url, token)
    good = ArtifactRef(
        id=art["id"], sha256=art["sha256"], size_bytes=art["size_bytes"], format="gguf",
        quant="f32", url=api(f"/artifacts/{art['id']}/content"),
    )  # fmt: skip
    assert client.download_artifact(good, tmp_path / "m.gguf").read_bytes() == b"GGUF-genuine"
    wrong = good.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(ArtifactCorrupt):
        client.download_artifact(wrong, tmp_path / "bad.gguf")
    assert not (tmp_path / "bad.gguf").exists() and not (tmp_path / "bad.gguf.part").exists()
    # Bytes altered in the store after registration are caught too; the job goes back.
    lab.store.resolve(f"{art['sha256'][:2]}/{art['sha256']}.gguf").write_bytes(b"tampered")
    job = lab.job(art["id"])
    agent = _agent(lab, token, tmp_path)
    agent.register()
    agent.run_job(CoordinatorClient(lab.url, token).lease().job)  # type: ignore[arg-type]
    state = _job_state(lab, job["id"])
    assert state["state"] == "queued" and state["attempts"] == 1
    assert "sha256" in state["last_error"]


def test_lost_device_goes_offline_and_its_job_back_to_the_queue(lab: Lab, tmp_path: Path) -> None:
    token = lab.register("phone", "android")
    art = lab.upload(b"GGUF-phone")
    job = lab.job(art["id"], device_kind="android")
    runner = FakeRunner(delay_s=5, kind="android")
    runner.lose_device_during_measure = True
    agent = _agent(lab, token, tmp_path, runner)
    thread = threading.Thread(target=agent.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while _job_state(lab, job["id"])["attempts"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        state = _job_state(lab, job["id"])
        assert state["state"] == "queued" and "device lost" in state["last_error"]
        device = lab.admin.get(api("/devices/phone")).json()
        assert device["online"] is False
        # The phone comes back: the agent reports it online and measures the job.
        runner.lose_device_during_measure = False
        runner.delay_s = 0
        runner.present = True
        while _job_state(lab, job["id"])["state"] != "done":
            assert time.monotonic() < deadline + 10
            time.sleep(0.05)
        assert lab.admin.get(api("/devices/phone")).json()["online"] is True
    finally:
        agent.stop.set()
        thread.join(timeout=10)
