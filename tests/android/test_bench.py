"""Detached benchmark runs on the emulated phone: figures, deadlines, OOM, dropped phones.

Most tests use a scripted stand-in for llama-bench (``tests/support/fake_llama_bench.py``) so
that every failure path is exact and fast; ``test_real_llama_bench_on_the_phone`` runs the x86
llama-bench built by ``star.runtime.ensure_runtime()`` on a tiny GGUF.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from device_agents.android import AndroidDevice, CachePolicy, DeviceGone, DeviceProfile
from device_agents.llamacpp.commands import BenchSettings
from device_agents.llamacpp.results import RunOutcome, parse_llama_bench_json
from tests.support.adb_server import AdbServer
from tests.support.emulated_phone import EmulatedPhone
from tests.support.fake_llama_bench import expected_samples_ns, write_fake_llama_bench
from tests.support.procs import sleepers
from tests.support.wait import wait_for

ROOT = "/data/local/tmp/star"


def _profile(**overrides) -> DeviceProfile:
    values = dict(threads=1, cpu_mask="0x1", poll_interval_s=0.1, cool_down_below_c=45.0,
                  cool_down_timeout_s=20.0, cool_down_poll_s=0.2, call_timeout_s=20.0)
    values.update(overrides)
    return DeviceProfile(**values)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    from tests.runtime.tiny_gguf import TinyConfig, write_tiny_gguf

    config = TinyConfig(vocab=1024, d_model=128, n_layers=2, n_head=4, n_head_kv=4, ffn=256,
                        context_length=2048)
    return write_tiny_gguf(tmp_path / "tiny.gguf", config)


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> list[RunOutcome]:
    """Every RunOutcome the device produced (what the "phone" wrote, as the agent read it)."""
    seen: list[RunOutcome] = []
    original = AndroidDevice._run_one

    def spy(self, *args, **kwargs):
        outcome = original(self, *args, **kwargs)
        seen.append(outcome)
        return outcome

    monkeypatch.setattr(AndroidDevice, "_run_one", spy)
    return seen


def _no_job_processes(phone: EmulatedPhone) -> bool:
    leftover = []
    for pid in phone.processes():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"job.sh" in cmdline or b"llama-bench" in cmdline or b"sleep" in cmdline:
            leftover.append(cmdline)
    return not leftover


def _thermal_reads(phone: EmulatedPhone) -> int:
    return sum(1 for s in phone.services if "thermal_zone" in s)


def test_bench_pipeline_matches_what_the_benchmark_wrote(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path,
    outcomes: list[RunOutcome],
):
    fake = write_fake_llama_bench(tmp_path / "bin", delay_s=0.3)
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial,
                                    _profile(cache_policy=CachePolicy.NONE))
    settings = BenchSettings(threads=4, n_gen=4, repetitions=3)
    report = device.run_bench(model, [64, 128], settings, runtime_files=[fake],
                              job_id="job-1", timeout_s=30)

    assert [c.context for c in report.contexts] == [64, 128]
    for measurement in report.contexts:
        c = measurement.context
        ttft = expected_samples_ns(n_prompt=c, n_gen=0, n_depth=0, repetitions=3)
        decode = expected_samples_ns(n_prompt=0, n_gen=4, n_depth=c, repetitions=3)
        assert measurement.ttft_ms.samples == pytest.approx([s / 1e6 for s in ttft])
        assert measurement.decode_ms_per_token.samples == pytest.approx(
            [s / 4 / 1e6 for s in decode])
        assert measurement.peak_rss_bytes and measurement.peak_rss_bytes > 0
        assert measurement.thermal_before.zones and measurement.thermal_after.zones
        assert not measurement.oom and measurement.error is None
    # the profile's pinning replaced the job's threads, on the command line and in the report
    assert (report.runtime.threads, report.runtime.cpu_mask) == (1, "0x1")
    assert report.runtime.llama_cpp_commit == "fake0001"
    for outcome in outcomes:
        argv = list(outcome.argv)
        assert argv[argv.index("-t") + 1] == "1" and argv[argv.index("-C") + 1] == "0x1"
        assert argv[0] == f"{ROOT}/bin/llama-bench"
    assert [(o.argv[o.argv.index("-p") + 1], o.argv[o.argv.index("-n") + 1]) for o in outcomes] \
        == [("64", "0"), ("0", "4"), ("128", "0"), ("0", "4")]
    # CachePolicy.NONE: nothing is left on the phone
    root = emulated_phone.device_path(ROOT)
    assert root.is_dir() and list(root.iterdir()) == []


def test_hot_phone_cools_down_before_measuring(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path
):
    emulated_phone.set_thermal({"cpu-big": 61.0, "battery": 33.0})
    cooled_at: list[float] = []

    def cool() -> None:
        # the phone cools once the device has read it hot a few times (it is waiting)
        wait_for("hot polls", lambda: _thermal_reads(emulated_phone) >= 3, 30)
        cooled_at.append(time.monotonic())
        emulated_phone.set_thermal({"cpu-big": 40.0, "battery": 33.0})

    threading.Thread(target=cool, daemon=True).start()
    fake = write_fake_llama_bench(tmp_path / "bin")
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial, _profile())
    report = device.run_bench(model, [64], BenchSettings(threads=1, n_gen=2, repetitions=1),
                              runtime_files=[fake], job_id="hot", timeout_s=30)
    assert report.contexts[0].thermal_before.max_c == 40.0
    launches = [t for t, s in emulated_phone.service_log() if "./job.sh" in s]
    assert len(launches) == 2  # prefill and decode processes
    assert cooled_at and min(launches) > cooled_at[0]  # nothing ran while the phone was hot


def test_deadline_kills_the_process_and_skips_larger_contexts(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path
):
    fake = write_fake_llama_bench(tmp_path / "bin", mode="sleep", sleep_s=120)
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial, _profile())
    started = time.monotonic()
    report = device.run_bench(model, [64, 128], BenchSettings(threads=1, n_gen=2),
                              runtime_files=[fake], job_id="slow", timeout_s=1.5)
    assert time.monotonic() - started < 15
    first, second = report.contexts
    assert "timed out" in first.error and not first.oom
    assert second.error == "not run: context 64 exceeded its deadline"
    assert _no_job_processes(emulated_phone)


def test_sigkill_is_reported_as_oom(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path,
    outcomes: list[RunOutcome],
):
    fake = write_fake_llama_bench(tmp_path / "bin", mode="oom")
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial, _profile())
    report = device.run_bench(model, [64, 128], BenchSettings(threads=1, n_gen=2),
                              runtime_files=[fake], job_id="oom", timeout_s=20)
    assert [o.returncode for o in outcomes] == [137]
    assert report.contexts[0].oom and report.contexts[0].error is None
    assert report.contexts[1].oom
    assert report.contexts[1].error == "not run: out of memory at context 64"


def test_phone_dropping_mid_run_is_device_gone(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path
):
    fake = write_fake_llama_bench(tmp_path / "bin", mode="sleep", sleep_s=120)
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial, _profile())

    def unplug_once_running() -> None:
        # the benchmark itself runs (the fake's ``exec sleep 120``), not only its launcher
        wait_for("the benchmark to run",
                 lambda: set(sleepers("120")) & set(emulated_phone.processes()), 20)
        emulated_phone.disconnect()

    threading.Thread(target=unplug_once_running, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(DeviceGone):
        device.run_bench(model, [64], BenchSettings(threads=1, n_gen=2),
                         runtime_files=[fake], job_id="drop", timeout_s=60)
    assert time.monotonic() - started < 20
    # like a real phone, the detached benchmark kept running; the next agent reaps it
    assert not _no_job_processes(emulated_phone)
    emulated_phone.allow_reconnect()
    adb_server.wait_state(emulated_phone.serial, "device", timeout=20)
    device.reap_stale_jobs()
    wait_for("the stale benchmark to be reaped", lambda: _no_job_processes(emulated_phone), 10)
    assert not emulated_phone.device_path(f"{ROOT}/jobs").exists()


def test_peak_rss_from_vmhwm_when_time_is_missing(
    adb_server: AdbServer, make_phone, model: Path, tmp_path: Path
):
    phone = make_phone(hide_time=True)
    fake = write_fake_llama_bench(tmp_path / "bin", delay_s=1.0)
    device = AndroidDevice.discover(adb_server.client(), phone.serial, _profile())
    assert device.launcher().time_prefix is None
    report = device.run_bench(model, [64], BenchSettings(threads=1, n_gen=2, repetitions=1),
                              runtime_files=[fake], job_id="hwm", timeout_s=20)
    peak = report.contexts[0].peak_rss_bytes
    assert peak and 100_000 < peak < 100_000_000  # a shell script's VmHWM, polled


def _runtime_files(lib_dir: Path, llama_bench: Path) -> list[Path]:
    """llama-bench and the shared libraries it loads, under the names the loader asks for."""
    libs = [p for p in sorted(lib_dir.iterdir())
            if p.name.endswith(".so.0") or (p.name.endswith(".so") and not p.is_symlink())]
    return [llama_bench, *libs]


def test_real_llama_bench_on_the_phone(
    adb_server: AdbServer, make_phone, model: Path, outcomes: list[RunOutcome]
):
    from star.runtime import ensure_runtime

    info = ensure_runtime()
    # hide the build directory from the phone: only the pushed libraries can be loaded
    phone = make_phone(hide_paths=(str(info.root),))
    device = AndroidDevice.discover(adb_server.client(), phone.serial,
                                    _profile(cpu_mask=None, threads=1))
    files = _runtime_files(info.lib_dir, info.llama_bench)
    settings = BenchSettings(threads=1, n_gen=4, repetitions=2)
    report = device.run_bench(model, [128, 256], settings, runtime_files=files,
                              job_id="real", timeout_s=120, build_flags=info.build_flags)

    assert report.runtime.llama_cpp_commit == info.commit
    assert len(outcomes) == 4 and all(o.returncode == 0 for o in outcomes)
    pairs = zip(outcomes[::2], outcomes[1::2], strict=True)
    for measurement, (ttft, decode) in zip(report.contexts, pairs, strict=True):
        pp, = parse_llama_bench_json(ttft.stdout)
        tg, = parse_llama_bench_json(decode.stdout)
        assert (pp.n_prompt, pp.n_gen) == (measurement.context, 0)
        assert (tg.n_prompt, tg.n_gen, tg.n_depth) == (0, 4, measurement.context)
        assert measurement.ttft_ms.samples == pytest.approx([s / 1e6 for s in pp.samples_ns])
        assert measurement.decode_ms_per_token.samples == pytest.approx(
            [s / 4 / 1e6 for s in tg.samples_ns])
        # the prefill process's high-water mark (llamacpp.results.assemble_context semantics)
        assert measurement.peak_rss_bytes == ttft.peak_rss_bytes
        assert 5_000_000 < measurement.peak_rss_bytes < 2_000_000_000
        assert measurement.thermal_before is not None and measurement.thermal_after is not None
    # default CachePolicy.RUNTIME: binaries stay, so the next job pushes nothing for them
    root = phone.device_path(ROOT)
    assert sorted(p.name for p in root.iterdir()) == ["bin"]
    sends = len([s for s in phone.services if s.startswith("sync:SEND") and "/bin/" in s])
    device.run_bench(model, [128], settings, runtime_files=files, job_id="again", timeout_s=120)
    assert len([s for s in phone.services
                if s.startswith("sync:SEND") and "/bin/" in s]) == sends


def test_bench_in_rewrite_mode(adb_server: AdbServer, make_phone, model: Path, tmp_path: Path):
    """The fallback emulation (no bubblewrap) still runs the agent's whole pipeline."""
    phone = make_phone(sandbox_mode="rewrite")
    fake = write_fake_llama_bench(tmp_path / "bin", delay_s=0.3)
    device = AndroidDevice.discover(adb_server.client(), phone.serial, _profile())
    report = device.run_bench(model, [64], BenchSettings(threads=1, n_gen=2, repetitions=2),
                              runtime_files=[fake], job_id="rw", timeout_s=20)
    measurement = report.contexts[0]
    assert measurement.error is None and measurement.peak_rss_bytes
    assert measurement.ttft_ms.samples == pytest.approx([64.0, 64.001])


def test_job_deadline_bounds_the_whole_run(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path
):
    fake = write_fake_llama_bench(tmp_path / "bin", mode="sleep", sleep_s=120)
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial, _profile())
    started = time.monotonic()
    report = device.run_bench(model, [64], BenchSettings(threads=1, n_gen=2),
                              runtime_files=[fake], job_id="lease", timeout_s=600,
                              job_deadline_s=2.0)
    assert time.monotonic() - started < 15
    assert "timed out" in report.contexts[0].error
    assert _no_job_processes(emulated_phone)


def test_only_larger_contexts_are_skipped_after_oom(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, model: Path, tmp_path: Path,
    outcomes: list[RunOutcome],
):
    fake = write_fake_llama_bench(tmp_path / "bin", mode="oom")
    device = AndroidDevice.discover(adb_server.client(), emulated_phone.serial, _profile())
    report = device.run_bench(model, [128, 256, 64], BenchSettings(threads=1, n_gen=2),
                              runtime_files=[fake], job_id="order", timeout_s=20)
    assert [(c.context, c.oom, c.error) for c in report.contexts] == [
        (128, True, None),
        (256, True, "not run: out of memory at context 128"),
        (64, True, None),  # smaller than the failure: still measured (and it ran)
    ]
    assert len(outcomes) == 2
