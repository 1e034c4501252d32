"""The agent loop against a live coordinator, with a fake runner: spool-before-report, delivery
at start-up, back-off while the coordinator is down, sha256 verification, a lost device; a
result refused with a 4xx is set aside at once, one failed on with 5xx after a bounded number
of tries (against a real HTTP server that answers only that status)."""

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
    GaveUp,
    Rejected,
    ServerError,
    Stopped,
    retrying,
)
from device_agents.protocol import ArtifactRef, ResultSubmission
from device_agents.spool import Spool
from tests.agents.fake_agent import FakeRunner
from tests.factories import AppThread, api, free_port, make_report
from tests.lab.conftest import Lab
from tests.support.wait import wait_for


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
    refused: list[Exception] = []

    def note(exc: Exception, delay: float) -> None:
        refused.append(exc)
        if len(refused) == 3:  # retried three times without raising: stop it
            stop.set()

    with pytest.raises(Stopped):
        retrying(client.lease, backoff=Backoff(0.02, 0.1), stop=stop, on_retry=note)
    assert len(refused) == 3 and all(isinstance(e, CoordinatorUnavailable) for e in refused)
    assert "ConnectError" in str(refused[0])  # nobody listens on that port


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
        state = wait_for("the job to be given back",
                         lambda: (j := _job_state(lab, job["id"]))["attempts"] > 0 and j, 10)
        assert state["state"] == "queued" and "device lost" in state["last_error"]
        # the agent gives the job back, then reports the phone offline
        wait_for("the phone to be reported offline",
                 lambda: lab.admin.get(api("/devices/phone")).json()["online"] is False, 10)
        # The phone comes back: the agent reports it online and measures the job.
        runner.lose_device_during_measure = False
        runner.delay_s = 0
        runner.present = True
        wait_for("the job to be measured",
                 lambda: _job_state(lab, job["id"])["state"] == "done", 10)
        assert lab.admin.get(api("/devices/phone")).json()["online"] is True
    finally:
        agent.stop.set()
        thread.join(timeout=10)


# --- 4xx: set aside at once; 5xx: retried, then given up ------------------------------------


class Answering(AppThread):
    """A real HTTP server (uvicorn in a thread) that answers every request with ``status``
    and counts them; /healthz answers 200 so that it can be waited for."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.hits = 0

        async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
            if scope["type"] != "http":
                return
            code = 200 if scope["path"] == "/healthz" else self.status
            self.hits += code != 200
            await send({"type": "http.response.start", "status": code,  # type: ignore[operator]
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body",  # type: ignore[operator]
                        "body": b'{"detail": "internal error"}'})

        super().__init__(app)


def test_a_500_is_retried_a_bounded_number_of_times_then_given_up() -> None:
    with Answering(500) as server:
        client = CoordinatorClient(server.url, "t", timeout_s=5)
        with pytest.raises(GaveUp) as caught:
            retrying(client.lease, backoff=Backoff(0.01, 0.02, server_error_tries=3),
                     stop=threading.Event())
        assert server.hits == 3
        assert isinstance(caught.value, Rejected) and caught.value.status == 500
        # bounded in time too: many tries allowed, 0.1 s of them
        server.hits = 0
        with pytest.raises(GaveUp):
            retrying(client.lease, backoff=Backoff(0.01, 0.02, server_error_tries=10_000,
                                                   server_error_s=0.1), stop=threading.Event())
        assert 2 <= server.hits < 100
        client.close()


def test_an_unavailable_coordinator_is_waited_for_without_a_bound() -> None:
    """503 (a proxy in front of a restarting coordinator) is not the coordinator failing on the
    request: it is retried past the server-error bound, until the agent stops."""
    with Answering(503) as server:
        client = CoordinatorClient(server.url, "t", timeout_s=5)
        stop = threading.Event()

        def enough(exc: Exception, _delay: float) -> None:
            assert not isinstance(exc, ServerError)
            if server.hits >= 6:
                stop.set()

        with pytest.raises(Stopped):
            retrying(client.lease, backoff=Backoff(0.01, 0.02, server_error_tries=2),
                     stop=stop, on_retry=enough)
        assert server.hits >= 6
        client.close()


def test_a_result_failed_on_with_5xx_is_set_aside_after_the_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    report = make_report("a" * 64, [128])
    entry = spool.put(7, ResultSubmission(lease_token="0" * 32, idempotency_key="five-hundred",
                                          report=report))
    with Answering(500) as server:
        agent = Agent(CoordinatorClient(server.url, "t", timeout_s=5), FakeRunner(), spool,
                      tmp_path / "work", backoff=Backoff(0.01, 0.02, server_error_tries=4))
        assert agent.deliver(entry) is False
        assert server.hits == 4
        assert agent.deliver_spool() == 0 and server.hits == 4  # never resent
    assert len(spool) == 0 and [p.name for p in (tmp_path / "spool" / "rejected").iterdir()] \
        == [entry.path.name]


def test_a_result_refused_with_a_4xx_is_set_aside_and_its_job_requeued(
    lab: Lab, tmp_path: Path
) -> None:
    token = lab.register("lap")
    art = lab.upload(b"GGUF-wrong-file")
    job = lab.job(art["id"])
    with lab.client(token) as http:
        spec = http.post(api("/agent/lease")).json()["job"]
    spool = Spool(tmp_path / "spool")
    spool.put(spec["job_id"], ResultSubmission(
        lease_token=spec["lease_token"], idempotency_key="wrong-file-key",
        report=make_report("f" * 64, spec["contexts"]),  # another file's sha256: a 422
    ))  # fmt: skip
    agent = _agent(lab, token, tmp_path)
    assert agent.deliver_spool() == 0
    assert len(spool) == 0 and len(list((tmp_path / "spool" / "rejected").iterdir())) == 1
    assert agent.deliver_spool() == 0  # nothing is resent
    state = _job_state(lab, job["id"])
    assert (state["state"], state["attempts"]) == ("queued", 1), state
    assert "model_sha256" in state["last_error"]
