"""The measurement rule on the emulated phone: big-core pinning on heterogeneous cores, the
platform thermal status, re-measurement of a noisy figure after a cool-down wait (recorded as the
measurement's conditions), the pinned-commit check, libraries pushed once, and a stop request
that kills the benchmark on the phone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from device_agents.android import AndroidDevice, DeviceProfile, RuntimeCommitMismatch
from device_agents.llamacpp.commands import BenchSettings
from device_agents.llamacpp.results import RunOutcome
from device_agents.measure_policy import Cancelled
from device_agents.protocol import RemeasurePolicy
from tests.support.adb_sandbox import SNAPDRAGON_8_GEN_2
from tests.support.adb_server import AdbServer
from tests.support.emulated_phone import EmulatedPhone
from tests.support.fake_llama_bench import write_fake_llama_bench
from tests.support.wait import wait_for

ROOT = "/data/local/tmp/star"
SETTINGS = BenchSettings(threads=8, n_gen=2, repetitions=3)


def _profile(**overrides: object) -> DeviceProfile:
    values: dict[str, object] = dict(poll_interval_s=0.1, cool_down_below_c=45.0,
                                     cool_down_timeout_s=20.0, cool_down_poll_s=0.2,
                                     call_timeout_s=20.0)  # fmt: skip
    values.update(overrides)
    return DeviceProfile(**values)  # type: ignore[arg-type]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    from tests.runtime.tiny_gguf import SMALLEST, write_tiny_gguf

    return write_tiny_gguf(tmp_path / "tiny.gguf", SMALLEST)


def _arg(outcome: RunOutcome, flag: str) -> str:
    return outcome.argv[outcome.argv.index(flag) + 1]


def test_big_cores_of_a_snapdragon_layout_are_pinned(
    adb_server: AdbServer, make_phone, model: Path, tmp_path: Path,  # noqa: ANN001
    outcomes: list[RunOutcome],
) -> None:  # fmt: skip
    phone = make_phone(cores=SNAPDRAGON_8_GEN_2)  # 3 little, 4 big, 1 prime
    device = AndroidDevice.discover(adb_server.client(), phone.serial, _profile())
    report = device.run_bench(model, [64], SETTINGS, runtime_files=[
        write_fake_llama_bench(tmp_path / "bin")], job_id="pin", timeout_s=30)
    assert (report.runtime.threads, report.runtime.cpu_mask) == (5, "0xf8")
    assert device.properties().cpu_cores == 8
    assert {(_arg(o, "-t"), _arg(o, "-C")) for o in outcomes} == {("5", "0xf8")}


def test_thermal_status_is_recorded_with_the_figure(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path
) -> None:
    emulated_phone.set_thermal({"cpu-big": 47.0, "battery": 33.0})  # "moderate": status 2
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial,
                                    _profile(cool_down_below_c=50.0))  # fmt: skip
    report = device.run_bench(model, [64], SETTINGS, job_id="status", timeout_s=30,
                              runtime_files=[write_fake_llama_bench(tmp_path / "bin")])
    (only,) = report.contexts
    assert only.thermal_before is not None and only.thermal_before.status == 2
    assert only.thermal_before.zones["hal:cpu-big"] == 47.0
    assert only.conditions is not None and only.conditions.quiet is True
    assert only.conditions.note is not None and "thermal status 2" in only.conditions.note


def test_noisy_figure_is_measured_again_and_the_quiet_try_kept(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path,
    outcomes: list[RunOutcome],
) -> None:  # fmt: skip
    fake = write_fake_llama_bench(tmp_path / "bin", noise_pct=[60, 0, 0, 0])  # try 1 prefill
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial, _profile())
    report = device.run_bench(model, [64], SETTINGS, runtime_files=[fake], job_id="noisy",
                              timeout_s=30, remeasure=RemeasurePolicy(max_tries=3))
    (only,) = report.contexts
    assert only.tries == 2 and len(outcomes) == 4
    assert only.ttft_ms is not None and only.ttft_ms.cv < 0.01  # the quiet try was kept
    assert only.conditions is not None and only.conditions.quiet is True
    assert "kept try 2 of 2 (least noisy); try 1: TTFT cv" in (only.conditions.note or "")
    assert [o.argv.count("-p") for o in outcomes] == [1, 1, 1, 1]
    assert any("/jobs/noisy/c64-try2-ttft" in s for s in emulated_phone.services)


def test_hot_figure_is_measured_again_after_a_cool_down(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path,
    outcomes: list[RunOutcome],
) -> None:  # fmt: skip
    # each process runs ~1 s; the phone heats up while try 1 decodes, so try 1 ends hot and try
    # 2 first waits for the cool-down; that wait is part of the kept figure's conditions
    fake = write_fake_llama_bench(tmp_path / "bin", delay_s=1.0)
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial, _profile())
    cooled_at: list[float] = []

    def launches() -> list[float]:
        return [t for t, s in emulated_phone.service_log() if "./job.sh" in s]

    def weather() -> None:
        wait_for("try 1's decode", lambda: len(launches()) >= 2, 60)
        heated_at = time.monotonic()
        emulated_phone.set_thermal({"cpu-big": 52.0, "battery": 33.0})
        # cool down once the agent has seen the phone hot a few times (it is waiting)
        wait_for("a hot poll", lambda: sum(1 for t, s in emulated_phone.service_log()
                                           if t > heated_at and "thermal_zone" in s) >= 4, 60)
        cooled_at.append(time.monotonic())
        emulated_phone.set_thermal({"cpu-big": 38.0, "battery": 33.0})

    heater = threading.Thread(target=weather, daemon=True)
    heater.start()
    report = device.run_bench(model, [64], SETTINGS, runtime_files=[fake], job_id="hot",
                              timeout_s=30, remeasure=RemeasurePolicy(max_tries=3))
    heater.join(10)
    (only,) = report.contexts
    assert only.tries == 2 and len(outcomes) == 4
    assert only.thermal_after is not None and only.thermal_after.max_c == 38.0
    assert only.conditions is not None and only.conditions.quiet is True
    assert only.conditions.waited_s > 0
    assert "try 1: 52.0 C > 45.0 C" in (only.conditions.note or "")
    assert cooled_at and launches()[2] > cooled_at[0]  # try 2 started only once cool


def test_binary_of_another_commit_is_refused_before_measuring(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path
) -> None:
    fake = write_fake_llama_bench(tmp_path / "bin", commit="deadbeef7")
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial, _profile())
    with pytest.raises(RuntimeCommitMismatch) as refused:
        device.run_bench(model, [64], SETTINGS, runtime_files=[fake], job_id="commit",
                         timeout_s=30, expected_commit="0c1e57098")
    assert "deadbeef7" in str(refused.value) and "0c1e57098" in str(refused.value)
    assert not any("./job.sh" in s for s in emulated_phone.services)  # nothing was measured


def test_symlinked_libraries_are_pushed_once(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    fake = write_fake_llama_bench(bin_dir)
    (bin_dir / "libggml.so.0.9.4").write_bytes(b"\x7fELF fake library " * 1000)
    (bin_dir / "libggml.so.0").symlink_to("libggml.so.0.9.4")
    (bin_dir / "libggml.so").symlink_to("libggml.so.0")
    from device_agents.android_runner import runtime_files

    files = runtime_files(fake, bin_dir)
    assert len(files) == 4
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial, _profile())
    device.run_bench(model, [64], SETTINGS, runtime_files=files, job_id="libs", timeout_s=30)
    sends = [s for s in emulated_phone.services if s.startswith("sync:SEND") and "libggml" in s]
    assert len(sends) == 1 and "libggml.so.0.9.4" in sends[0]
    on_phone = emulated_phone.device_path(f"{ROOT}/bin")
    for name in ("libggml.so", "libggml.so.0"):
        assert (on_phone / name).is_symlink()
        assert (on_phone / name).read_bytes() == (bin_dir / "libggml.so.0.9.4").read_bytes()


def test_stop_request_kills_the_benchmark_on_the_phone(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path
) -> None:
    fake = write_fake_llama_bench(tmp_path / "bin", mode="sleep", sleep_s=120)
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial, _profile())
    cancel = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            device.run_bench(model, [64, 128], SETTINGS, runtime_files=[fake], job_id="stop",
                             timeout_s=600, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_for("the benchmark to start",
             lambda: any("./job.sh" in s for s in emulated_phone.services), 30)
    cancel.set()
    worker.join(30)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], Cancelled)
    leftover = [pid for pid in emulated_phone.processes()
                if b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes()]  # fmt: skip
    assert leftover == []
    assert not emulated_phone.device_path(f"{ROOT}/jobs/stop").exists()
