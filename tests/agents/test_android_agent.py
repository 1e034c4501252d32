"""The Android agent against a live coordinator and an emulated phone on a private adb server
(tests/support): a phone unplugged mid-job, and a hot phone (re-measured up to the
coordinator's max_tries).

The adb fixtures (a private adb server per adb build, the emulated phone) come from
tests/android/conftest.py through tests/agents/conftest.py. llama-bench is the scripted
stand-in of tests/support/fake_llama_bench.py, so the failure paths are exact and fast; the
model is a real tiny GGUF (the device layer checks its header).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from device_agents.agent import Agent
from device_agents.android import DeviceProfile
from device_agents.android_runner import AndroidRunner
from device_agents.client import Backoff, CoordinatorClient
from device_agents.spool import Spool
from tests.factories import api
from tests.lab.conftest import Lab
from tests.support.adb_server import AdbServer
from tests.support.emulated_phone import EmulatedPhone
from tests.support.fake_llama_bench import write_fake_llama_bench
from tests.support.wait import wait_for


def _profile(**overrides: object) -> DeviceProfile:
    values: dict[str, object] = dict(
        threads=1, cpu_mask="0x1", poll_interval_s=0.1, cool_down_below_c=45.0,
        cool_down_timeout_s=5.0, cool_down_poll_s=0.2, call_timeout_s=20.0,
    )  # fmt: skip
    values.update(overrides)
    return DeviceProfile(**values)  # type: ignore[arg-type]


@pytest.fixture
def tiny_model(tmp_path: Path) -> bytes:
    from tests.runtime.tiny_gguf import SMALLEST, write_tiny_gguf

    return write_tiny_gguf(tmp_path / "tiny.gguf", SMALLEST).read_bytes()


def _job(lab: Lab, job_id: int) -> dict[str, Any]:
    return lab.admin.get(api(f"/jobs/{job_id}")).json()  # type: ignore[no-any-return]


def _device(lab: Lab, name: str) -> dict[str, Any]:
    return lab.admin.get(api(f"/devices/{name}")).json()  # type: ignore[no-any-return]


def _start(
    lab: Lab, token: str, runner: AndroidRunner, tmp_path: Path
) -> tuple[Agent, threading.Thread]:
    agent = Agent(
        CoordinatorClient(lab.url, token, timeout_s=10),
        runner,
        Spool(tmp_path / "spool"),
        tmp_path / "work",
        heartbeat_interval_s=0.3,
        poll_interval_s=0.2,
        backoff=Backoff(0.05, 0.5),
    )
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    return agent, thread


def test_phone_unplugged_mid_job_goes_offline_and_the_job_is_requeued(
    lab: Lab, adb_server: AdbServer, emulated_phone: EmulatedPhone, tiny_model: bytes,
    tmp_path: Path,
) -> None:  # fmt: skip
    token = lab.register("s24", "android", serial=emulated_phone.serial)
    art = lab.upload(tiny_model)
    job = lab.job(art["id"], device_kind="android", contexts=[64], repetitions=1, n_gen=2)
    slow = write_fake_llama_bench(tmp_path / "slow", mode="sleep", sleep_s=120)
    runner = AndroidRunner(adb_server.client(), emulated_phone.serial, files=[slow],
                           profile=_profile())  # fmt: skip
    agent, thread = _start(lab, token, runner, tmp_path)
    try:
        wait_for("the bench", lambda: any("./job.sh" in s for s in emulated_phone.services), 30)
        emulated_phone.disconnect()  # the cable is pulled while llama-bench runs
        state = wait_for("the job to be given back",
                         lambda: (j := _job(lab, job["id"]))["attempts"] == 1 and j, 30)
        assert state["state"] == "queued" and "device lost" in state["last_error"]
        # the agent gives the job back, then reports the phone offline
        device = wait_for("the phone to be reported offline",
                          lambda: (d := _device(lab, "s24"))["online"] is False and d, 30)
        assert device["online"] is False and device["properties"]["kind"] == "android"
        # Plugged back in (and the benchmark fixed): the agent reports online and measures.
        runner.files = [write_fake_llama_bench(tmp_path / "fast", delay_s=0.1)]
        emulated_phone.allow_reconnect()
        adb_server.connect(emulated_phone.address)
        wait_for("the job to be measured after reconnect",
                 lambda: _job(lab, job["id"])["state"] == "done", 60)
        assert _device(lab, "s24")["online"] is True  # reported before it leased again
        rows = lab.admin.get(api("/measurements"), params={"job_id": job["id"]}).json()
        assert rows["count"] == 1
    finally:
        agent.stop.set()
        thread.join(timeout=30)


def test_hot_phone_measurement_is_flagged_hot(
    lab: Lab, adb_server: AdbServer, emulated_phone: EmulatedPhone, tiny_model: bytes,
    tmp_path: Path,
) -> None:  # fmt: skip
    emulated_phone.set_thermal({"cpu-big": 61.0, "battery": 33.0})
    token = lab.register("hot", "android", serial=emulated_phone.serial)
    art = lab.upload(tiny_model)
    job = lab.job(art["id"], device_kind="android", contexts=[64], repetitions=2, n_gen=2)
    fake = write_fake_llama_bench(tmp_path / "bin", delay_s=0.1)
    runner = AndroidRunner(adb_server.client(), emulated_phone.serial, files=[fake],
                           profile=_profile(cool_down_timeout_s=0.5))  # fmt: skip
    agent, thread = _start(lab, token, runner, tmp_path)
    try:
        wait_for("the measurement", lambda: _job(lab, job["id"])["state"] == "done", 60)
    finally:
        agent.stop.set()
        thread.join(timeout=30)
    row = lab.admin.get(api("/measurements"), params={"job_id": job["id"]}).json()["data"][0]
    assert row["flagged_hot"] is True and row["temp_before_c"] == 61.0
    # hot every time: measured the coordinator's max_tries times (each after a cool-down wait
    # that gave up), and the record says so
    from star.db.repo.results import list_measurements

    with lab.db.session_scope(readonly=True) as s:
        (stored,) = list_measurements(s, job_id=job["id"])
    assert stored.tries == lab.settings.coordinator.max_tries == 3
    assert stored.conditions is not None and stored.conditions["quiet"] is False
    assert "still 61.0 C" in stored.conditions["note"] and stored.conditions["waited_s"] >= 0.5
