"""Run ``star-et-bench`` on this machine: one process per run, peak RSS from wait4.

The launcher and its reasoning (why ``ru_maxrss`` of a plain child is polluted by its parent)
are the llama.cpp path's, reused: ``device_agents.llamacpp.local.run_process``.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from device_agents.executorch.commands import PteBenchSettings, build_commands
from device_agents.executorch.results import (
    PteInfo,
    RunnerParseError,
    assemble_context,
    parse_info,
)
from device_agents.llamacpp.commands import BenchInputError, check_contexts, check_model_file
from device_agents.llamacpp.local import (
    cpu_model,
    file_sha256,
    run_pair,
    settle,
)
from device_agents.llamacpp.results import stderr_tail
from device_agents.protocol import RemeasurePolicy
from device_agents.schemas import BenchReport, Conditions, ContextMeasurement, RuntimeSettings

if TYPE_CHECKING:
    from device_agents.measure_policy import Attempt
    from device_agents.quiet import QuietGate

DELEGATE = "xnnpack"  # the backend star.export.executorch lowers to
KV_CACHE_TYPE = "f32"  # the exported KV cache's element type
PTE_MAGIC = b"ET"  # flatbuffer file identifier "ET12" at bytes 4..8


def read_pte_info(runner: str | Path, model: str | Path, *, timeout_s: float = 120) -> PteInfo:
    """Ask the runner what the program holds; ``BenchInputError`` if it is not a STAR .pte."""
    proc = subprocess.run(
        [str(runner), str(model), "info"], capture_output=True, text=True, timeout=timeout_s
    )
    if proc.returncode != 0:
        raise BenchInputError(f"{model}: {stderr_tail(proc.stderr)}")
    try:
        return parse_info(proc.stdout)
    except RunnerParseError as exc:
        raise BenchInputError(f"{model}: {exc}") from None


def validate_pte(
    path: str | Path, contexts: Sequence[int], *, n_gen: int, info: PteInfo | None = None
) -> None:
    """Check the file and the contexts before any benchmark process starts.

    A context C needs C + n_gen positions (decode generates n_gen tokens after C); ``info``
    (from ``read_pte_info``) gives the program's ``max_context``.
    """
    path = check_model_file(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise BenchInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(head) < 8 or head[4:6] != PTE_MAGIC:
        raise BenchInputError(f"{path}: not an ExecuTorch program (no ET file identifier)")
    check_contexts(contexts)
    if info is not None:
        too_long = [c for c in contexts if c + n_gen > info.max_context]
        if too_long:
            raise BenchInputError(
                f"context {too_long[0]} + {n_gen} generated exceeds the program's max_context "
                f"{info.max_context} ({path}; export with a larger --max-context)"
            )


def measure_context(
    runner: str | Path,
    model: str | Path,
    context: int,
    settings: PteBenchSettings,
    *,
    timeout_s: float | None = None,
    memory_limit_bytes: int | None = None,
    profile_dir: str | Path | None = None,
) -> ContextMeasurement:
    """Both runs at one context, once (the decode run only if the prefill run succeeded)."""
    runs = PteContextRunner(runner, model, settings, timeout_s=timeout_s,
                            memory_limit_bytes=memory_limit_bytes, profile_dir=profile_dir)
    return runs.measure_once(context).measurement


class PteContextRunner:
    """``measure_policy.ContextRunner`` for a .pte on this machine: the same rule (quiet wait
    before each try, re-measure a noisy figure, stop larger contexts after an out-of-memory or a
    timeout, ``cancel`` kills the running process) as llama.cpp's ``LocalContextRunner``."""

    def __init__(
        self,
        runner: str | Path,
        model: str | Path,
        settings: PteBenchSettings,
        *,
        timeout_s: float | None = None,
        memory_limit_bytes: int | None = None,
        profile_dir: str | Path | None = None,
        cancel: threading.Event | None = None,
        quiet: QuietGate | None = None,
    ) -> None:
        self.runner, self.model, self.settings = runner, model, settings
        self.timeout_s = timeout_s
        self.memory_limit_bytes = memory_limit_bytes
        self.profile_dir = profile_dir
        self.cancel = cancel
        self.quiet = quiet

    def settle(self) -> Conditions:
        return settle(self.quiet)

    def measure_once(self, context: int) -> Attempt:
        from device_agents.measure_policy import Attempt, outcome_of

        ttft_cmd, decode_cmd = build_commands(self.runner, self.model, context, self.settings,
                                              profile_dir=self.profile_dir)
        ttft, decode, before, after = run_pair(
            ttft_cmd, decode_cmd, timeout_s=self.timeout_s,
            memory_limit_bytes=self.memory_limit_bytes, cancel=self.cancel)
        measurement, _ = assemble_context(context, ttft, decode, thermal_before=before,
                                          thermal_after=after)
        return Attempt(measurement, outcome_of(ttft, decode, measurement))


def run_pte_bench(
    model_path: str | Path,
    contexts: Sequence[int],
    settings: PteBenchSettings,
    runner_path: str | Path,
    *,
    build_flags: Sequence[str] = (),
    timeout_s: float | None = None,
    memory_limit_bytes: int | None = None,
    profile_dir: str | Path | None = None,
    remeasure: RemeasurePolicy | None = None,
    quiet: QuietGate | None = None,
    cancel: threading.Event | None = None,
) -> BenchReport:
    """Measure a .pte at each context on this machine; the ExecuTorch twin of run_local_bench,
    by the same ``measure_policy`` rule (``remeasure``, ``quiet`` and ``cancel`` as there).

    Raises ``BenchInputError`` for invalid input (before any timed run). A context that runs
    out of memory is ``oom`` (larger ones are then not run); any other failure is that
    context's ``error``. With ``profile_dir`` each run also writes an ETDump there
    (``profile_paths`` names them).
    """
    from device_agents.measure_policy import measure_contexts

    model = Path(model_path)
    validate_pte(model, contexts, n_gen=settings.n_gen)
    info = read_pte_info(runner_path, model)
    validate_pte(model, contexts, n_gen=settings.n_gen, info=info)
    if profile_dir is not None:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
    runs = PteContextRunner(runner_path, model, settings, timeout_s=timeout_s,
                            memory_limit_bytes=memory_limit_bytes, profile_dir=profile_dir,
                            cancel=cancel, quiet=quiet)  # fmt: skip
    measurements = measure_contexts(contexts, runs, remeasure or RemeasurePolicy(max_tries=1),
                                    cancel=cancel).measurements
    runtime = RuntimeSettings(
        runtime="executorch",
        runtime_version=info.executorch_version,
        delegate=DELEGATE,
        build_flags=list(build_flags),
        threads=settings.threads,
        cpu_mask=settings.cpu_mask,
        flash_attn=False,
        cache_type_k=KV_CACHE_TYPE,
        cache_type_v=KV_CACHE_TYPE,
        n_gen=settings.n_gen,
        repetitions=settings.repetitions,
        cpu_model=cpu_model(),
        mmap=True,
    )
    return BenchReport(
        model_sha256=file_sha256(model),
        model_bytes=model.stat().st_size,
        runtime=runtime,
        contexts=measurements,
    )
