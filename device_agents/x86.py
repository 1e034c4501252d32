"""The x86 runner: this host's CPU, measured with the local llama-bench.

Properties come from /proc and psutil; the measurement is ``device_agents.llamacpp.
run_local_bench`` with the job's contexts, repetitions and re-measure policy, after a
quiet-machine wait (``device_agents.quiet``) before every try. The llama-bench binary is the
configured one, else the pinned build from ``star.runtime.ensure_runtime()`` (imported lazily:
a lab host may configure a binary and never build). A job of runtime ``executorch`` (a .pte) is
measured by the ExecuTorch runner ``star-et-bench`` under the same rule; the agent advertises
that runtime only when the runner is built or can be (``executorch_available``).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from device_agents.agent import JobBroken
from device_agents.protocol import JobSpec
from device_agents.quiet import QuietGate, QuietThresholds
from device_agents.schemas import BenchReport, DeviceProperties

log = logging.getLogger(__name__)

# A process's deadline only guards against a hung benchmark, so it is generous: this many
# seconds per run (warm-up included) up to ``DEADLINE_CONTEXT`` tokens, growing as C**1.5 beyond
# (prefill grows between C and C**2 with attention). A flat 120 s once cut off a size-matched
# transformer's 32K prefill with flash attention off, which needs minutes on a 2-core laptop.
SECONDS_PER_RUN = 120.0
DEADLINE_CONTEXT = 4096


def process_deadline_s(contexts: Sequence[int], repetitions: int) -> float:
    """Seconds one benchmark process may take at the largest of ``contexts``."""
    scale = max(1.0, max(contexts) / DEADLINE_CONTEXT) ** 1.5
    return SECONDS_PER_RUN * (repetitions + 1) * scale


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
        executorch_runner: Path | None = None,
    ) -> None:
        self._bench = llama_bench_path
        self._et_runner = executorch_runner  # None: the cached build (star runtime build
        # --runtime executorch), made on the first .pte job
        self.quiet = quiet  # None: measure without waiting for a quiet machine
        self._threads = threads
        self._build_flags = tuple(build_flags)
        self._commit = commit

    def properties(self) -> DeviceProperties:
        props = host_properties()
        if self.executorch_available():
            props = props.model_copy(update={"runtimes": ["llama.cpp", "executorch"]})
        return props

    def executorch_available(self) -> bool:
        """Whether this host can run .pte jobs: the runner is built, or can be (the executorch
        wheel and g++ are installed; the first job builds it, ~15 s)."""
        if self._et_runner is not None:
            return self._et_runner.is_file()
        try:
            from star.runtime.executorch import executorch_package, read_runner_marker
        except ImportError:  # an agent-only host without the star package
            return False
        if read_runner_marker() is not None:
            return True
        try:
            executorch_package()
        except Exception:  # noqa: BLE001 - any failure to find the wheel: not available
            return False
        return shutil.which("g++") is not None

    def _pte_runner(self) -> tuple[Path, list[str]]:
        if self._et_runner is not None:
            return self._et_runner, []
        from star.runtime.executorch import ensure_executorch_runner  # builds once per host

        info = ensure_executorch_runner()
        return info.runner, list(info.compile_flags)

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
        if job.runtime == "executorch":
            return self.measure_pte(model_path, job, cancel)
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
                timeout_s=process_deadline_s(job.contexts, job.repetitions),
                remeasure=job.remeasure,
                quiet=QuietGate(self.quiet, stop=cancel) if self.quiet is not None else None,
                cancel=cancel,
            )
        except (BenchInputError, UnsupportedFlagError, GGUFError) as exc:
            raise JobBroken(str(exc)) from exc

    def measure_pte(self, model_path: Path, job: JobSpec, cancel: threading.Event) -> BenchReport:
        """A .pte job: the ExecuTorch runner under the same measurement rule."""
        from device_agents.executorch import PteBenchSettings, run_pte_bench
        from device_agents.llamacpp import BenchInputError

        runner, flags = self._pte_runner()
        threads = self._threads or max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)
        try:
            settings = PteBenchSettings(threads=threads, n_gen=job.n_gen,
                                        repetitions=job.repetitions)
            return run_pte_bench(
                model_path, job.contexts, settings, runner, build_flags=flags,
                timeout_s=process_deadline_s(job.contexts, job.repetitions),
                remeasure=job.remeasure,
                quiet=QuietGate(self.quiet, stop=cancel) if self.quiet is not None else None,
                cancel=cancel,
            )  # fmt: skip
        except BenchInputError as exc:
            raise JobBroken(str(exc)) from exc
