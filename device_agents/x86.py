"""The x86 runner: this host's CPU, measured with the local llama-bench.

Properties come from /proc and psutil; the measurement is ``device_agents.llamacpp.
run_local_bench`` with the job's contexts, repetitions and re-measure policy, after a
quiet-machine wait (``device_agents.quiet``) before every try. The llama-bench binary is the
configured one, else the pinned build from ``star.runtime.ensure_runtime()`` (imported lazily:
a lab host may configure a binary and never build).
"""

from __future__ import annotations

import logging
import os
import platform
import threading
from collections.abc import Sequence
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from device_agents.agent import JobBroken
from device_agents.protocol import JobSpec
from device_agents.quiet import QuietGate, QuietThresholds
from device_agents.schemas import BenchReport, DeviceProperties

log = logging.getLogger(__name__)

# Per context and repetition: generous, since a deadline only guards against a hung process.
SECONDS_PER_CONTEXT_REP = 120.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_properties() -> DeviceProperties:
    cpu = cpu_model()
    return DeviceProperties(
        kind="x86",
        model=platform.node(),
        soc=cpu,
        abi=platform.machine(),
        ram_bytes=psutil.virtual_memory().total,
        os=f"{platform.system()} {platform.release()}",
        cpu=cpu,
        cpu_cores=os.cpu_count(),
    )


class X86Runner:
    kind = "x86"

    def __init__(
        self,
        *,
        llama_bench_path: Path | None = None,
        threads: int | None = None,
        build_flags: Sequence[str] = (),
        commit: str | None = None,
        quiet: QuietThresholds | None = None,
    ) -> None:
        self._bench = llama_bench_path
        self.quiet = quiet  # None: measure without waiting for a quiet machine
        self._threads = threads
        self._build_flags = tuple(build_flags)
        self._commit = commit

    def properties(self) -> DeviceProperties:
        return host_properties()

    def available(self) -> bool:
        return True

    def _llama_bench(self) -> Path:
        if self._bench is None:
            from star.runtime import ensure_runtime  # builds once per host (minutes)

            info = ensure_runtime()
            self._bench = info.llama_bench
            self._build_flags = self._build_flags or tuple(info.build_flags)
            self._commit = self._commit or info.commit
        return self._bench

    def measure(self, model_path: Path, job: JobSpec, cancel: threading.Event) -> BenchReport:
        from device_agents.llamacpp import (
            BenchInputError,
            BenchSettings,
            GGUFError,
            UnsupportedFlagError,
            run_local_bench,
        )

        bench = self._llama_bench()
        threads = self._threads or max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)
        try:
            settings = BenchSettings(threads=threads, n_gen=job.n_gen, repetitions=job.repetitions,
                                     flash_attn=bool(job.flash_attn))
            return run_local_bench(
                model_path,
                job.contexts,
                settings,
                bench,
                build_flags=self._build_flags,
                commit=self._commit,
                timeout_s=SECONDS_PER_CONTEXT_REP * job.repetitions * len(job.contexts),
                remeasure=job.remeasure,
                quiet=QuietGate(self.quiet, stop=cancel) if self.quiet is not None else None,
                cancel=cancel,
            )
        except (BenchInputError, UnsupportedFlagError, GGUFError) as exc:
            raise JobBroken(str(exc)) from exc
