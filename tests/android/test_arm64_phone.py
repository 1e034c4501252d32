"""The real phone build on the emulated phone: the static aarch64 llama-bench of ``star runtime
build --target android-arm64`` is pushed by the agent's device layer and executed "on the phone"
through qemu-aarch64. Timings are meaningless; the protocol, the output, the pinning, the
commit check and the memory figure are real."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agents.android import AndroidDevice, CpuFeatureMissing, DeviceProfile
from device_agents.llamacpp.commands import BenchSettings
from device_agents.llamacpp.results import RunOutcome, parse_llama_bench_json
from device_agents.protocol import RemeasurePolicy
from star.runtime.build import LLAMA_CPP_COMMIT
from star.runtime.cross import PhoneRuntime, required_cpu_features
from tests.support.adb_sandbox import A53_FEATURES
from tests.support.adb_server import AdbServer


@pytest.fixture
def model(tmp_path: Path) -> Path:
    from tests.runtime.tiny_gguf import TinyConfig, write_tiny_gguf

    config = TinyConfig(vocab=256, d_model=64, n_layers=2, n_head=2, n_head_kv=2, ffn=128,
                        context_length=1024)  # fmt: skip
    return write_tiny_gguf(tmp_path / "tiny.gguf", config)


def test_arm64_llama_bench_measures_on_the_phone(
    adb_server: AdbServer, make_phone, model: Path, phone_runtime: PhoneRuntime,  # noqa: ANN001
    outcomes: list[RunOutcome],
) -> None:  # fmt: skip
    # no `time` on this phone: the peak comes from polling VmHWM of the process named
    # llama-bench, which only works if the emulated kernel names the qemu process after it
    phone = make_phone(hide_time=True)
    profile = DeviceProfile(poll_interval_s=0.1, cool_down_timeout_s=5, call_timeout_s=60)
    device = AndroidDevice.discover(adb_server.client(), phone.serial, profile)
    assert device.properties().abi == "arm64-v8a"
    settings = BenchSettings(threads=4, n_gen=4, repetitions=2)
    report = device.run_bench(
        model, [64, 128], settings, runtime_files=[phone_runtime.llama_bench], job_id="arm64",
        timeout_s=300, build_flags=phone_runtime.build_flags, expected_commit=LLAMA_CPP_COMMIT,
        remeasure=RemeasurePolicy(max_tries=1),
    )  # fmt: skip

    assert report.runtime.llama_cpp_commit == LLAMA_CPP_COMMIT
    assert "-DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod" in report.runtime.build_flags
    # the host-like heterogeneous cores: the big half is pinned (-C mask, -t its size)
    assert report.runtime.cpu_mask is not None and report.runtime.cpu_mask != "0x0"
    assert len(outcomes) == 4 and all(o.returncode == 0 for o in outcomes), outcomes[-1].stderr
    for outcome in outcomes:
        (result,) = parse_llama_bench_json(outcome.stdout)
        assert result.build_commit == LLAMA_CPP_COMMIT
        assert result.raw["cpu_mask"] == report.runtime.cpu_mask
        assert result.n_threads == report.runtime.threads
    for measurement in report.contexts:
        assert measurement.error is None and not measurement.oom
        assert measurement.ttft_ms is not None and measurement.decode_ms_per_token is not None
        assert measurement.peak_rss_bytes is not None and measurement.peak_rss_bytes > 5_000_000
        assert measurement.tries == 1 and measurement.conditions is not None
    # the binary stays on the phone (CachePolicy.RUNTIME): the next job pushes nothing
    sends = [s for s in phone.services if s.startswith("sync:SEND") and "/bin/" in s]
    device.run_bench(model, [64], settings, runtime_files=[phone_runtime.llama_bench],
                     job_id="again", timeout_s=300)  # fmt: skip
    assert [s for s in phone.services if s.startswith("sync:SEND") and "/bin/" in s] == sends


def test_dotprod_build_is_refused_on_a_phone_without_dot_product(
    adb_server: AdbServer, make_phone, model: Path, phone_runtime: PhoneRuntime,  # noqa: ANN001
) -> None:  # fmt: skip
    # a Cortex-A53 phone: /proc/cpuinfo lists no asimddp, and qemu executes as that CPU
    phone = make_phone(cpu_features=A53_FEATURES, qemu_cpu="cortex-a53")
    profile = DeviceProfile(poll_interval_s=0.1, cool_down_timeout_s=5, call_timeout_s=60)
    device = AndroidDevice.discover(adb_server.client(), phone.serial, profile)
    assert device.cpu_features() == set(A53_FEATURES.split())
    needs = required_cpu_features(phone_runtime.arch)
    assert needs == ("asimddp",)
    with pytest.raises(CpuFeatureMissing, match="asimddp.*android-arm64-compat"):
        device.run_bench(model, [64], BenchSettings(threads=1, n_gen=2, repetitions=1),
                         runtime_files=[phone_runtime.llama_bench], job_id="a53", timeout_s=300,
                         required_cpu_features=needs)  # fmt: skip
    assert not any(s.startswith("sync:") for s in phone.services)  # refused before any push
    # what the check prevents: the same build, measured anyway, dies on every context
    report = device.run_bench(model, [64], BenchSettings(threads=1, n_gen=2, repetitions=1),
                              runtime_files=[phone_runtime.llama_bench], job_id="a53",
                              timeout_s=300)  # fmt: skip
    (only,) = report.contexts
    assert only.error is not None and "illegal instruction" in only.error
