"""The Android runner: a phone over adb, measured by the pushed llama-bench.

Wraps ``device_agents.android.AndroidDevice``: every call re-discovers the phone (it may have
been unplugged since), ``DeviceGone`` becomes the agent's ``DeviceLost`` (the phone is reported
offline and the job goes back to the queue), errors that no retry can fix (the model or the
binary is refused) become ``JobBroken``, and a phone binary built from another llama.cpp commit
than the coordinator pins (``expected_commit``), or for CPU features the phone lacks, is
``RuntimeMismatch``: the agent gives the job back and stops. Timeouts derive from the job: each
llama-bench process gets ``seconds_per_rep`` per repetition, the whole job a deadline that also
covers the cool-down waits and the job's re-measurements.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import adbutils  # type: ignore[import-untyped]

from device_agents.agent import DeviceLost, JobBroken, RuntimeMismatch
from device_agents.android import (
    AndroidDevice,
    BenchSetupError,
    CpuFeatureMissing,
    DeviceGone,
    DeviceProfile,
    RuntimeCommitMismatch,
    TransferError,
)
from device_agents.llamacpp import BenchInputError, BenchSettings, GGUFError, UnsupportedFlagError
from device_agents.protocol import JobSpec
from device_agents.schemas import BenchReport, DeviceProperties

log = logging.getLogger(__name__)


def runtime_files(llama_bench: Path, libs: Path | None = None) -> list[Path]:
    """The files pushed to the phone: llama-bench and the shared libraries it loads (none for
    the static build of ``star runtime build --target android-arm64``). Symlinks among the
    libraries stay symlinks on the phone (``AndroidDevice.push_runtime``)."""
    files = [Path(llama_bench).expanduser()]
    if libs is not None:
        files += sorted(p for p in Path(libs).expanduser().glob("*.so*") if p.is_file())
    return files


class AndroidRunner:
    kind = "android"

    def __init__(
        self,
        client: adbutils.AdbClient,
        serial: str,
        *,
        files: Sequence[Path],
        profile: DeviceProfile | None = None,
        build_flags: Sequence[str] = (),
        seconds_per_rep: float = 300.0,
        expected_commit: str | None = None,
        required_cpu_features: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.serial = serial
        self.files = list(files)
        self.profile = profile or DeviceProfile()
        self.build_flags = tuple(build_flags)
        self.seconds_per_rep = seconds_per_rep
        self.expected_commit = expected_commit  # None: any build is accepted
        self.required_cpu_features = tuple(required_cpu_features)  # what the build needs

    @classmethod
    def connect(
        cls,
        serial: str,
        *,
        adb_host: str = "127.0.0.1",
        adb_port: int = 5037,
        files: Sequence[Path],
        profile: DeviceProfile | None = None,
        build_flags: Sequence[str] = (),
        expected_commit: str | None = None,
        required_cpu_features: Sequence[str] = (),
    ) -> AndroidRunner:
        return cls(adbutils.AdbClient(host=adb_host, port=adb_port), serial, files=files,
                   profile=profile, build_flags=build_flags, expected_commit=expected_commit,
                   required_cpu_features=required_cpu_features)  # fmt: skip

    def _device(self) -> AndroidDevice:
        try:
            return AndroidDevice.discover(self.client, self.serial, self.profile)
        except DeviceGone as exc:
            raise DeviceLost(str(exc)) from exc

    def available(self) -> bool:
        try:
            return AndroidDevice(self.client, self.serial, self.profile).state() == "device"
        except (DeviceGone, adbutils.AdbError, OSError):
            return False

    def properties(self) -> DeviceProperties:
        try:
            return self._device().properties()
        except DeviceGone as exc:
            raise DeviceLost(str(exc)) from exc

    def measure(self, model_path: Path, job: JobSpec, cancel: threading.Event) -> BenchReport:
        device = self._device()
        settings = BenchSettings(
            threads=self.profile.threads or 1,  # replaced by the phone's pinning
            n_gen=job.n_gen,
            repetitions=job.repetitions,
            flash_attn=bool(job.flash_attn),
        )
        per_process = self.seconds_per_rep * job.repetitions
        tries = job.remeasure.max_tries
        per_try = per_process * 2 + self.profile.cool_down_timeout_s * 2
        try:
            return device.run_bench(
                model_path,
                job.contexts,
                settings,
                runtime_files=self.files,
                job_id=f"job-{job.job_id}-{job.attempt}",
                timeout_s=per_process,
                job_deadline_s=per_try * len(job.contexts) * tries,
                build_flags=self.build_flags,
                remeasure=job.remeasure,
                expected_commit=self.expected_commit,
                required_cpu_features=self.required_cpu_features,
                cancel=cancel,
            )
        except DeviceGone as exc:
            raise DeviceLost(str(exc)) from exc
        except (RuntimeCommitMismatch, CpuFeatureMissing) as exc:
            raise RuntimeMismatch(str(exc)) from exc
        except (BenchInputError, UnsupportedFlagError, GGUFError, BenchSetupError) as exc:
            raise JobBroken(str(exc)) from exc
        except TransferError as exc:  # storage full, read-only path: this phone, this job
            raise RuntimeError(f"transfer to {self.serial} failed: {exc}") from exc
