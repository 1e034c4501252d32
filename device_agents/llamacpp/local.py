"""Run llama-bench on this machine: one process per invocation, peak RSS from ``wait4``.

Peak RSS needs care. ``ru_maxrss`` of a child is polluted by its parent: at ``exec`` the kernel
folds the high-water mark of the *old* address space into the child's figure, and Python's
subprocess starts children with vfork (old address space = the parent's, so a benchmark run from
a pytest process that once held 600 MB reported 600 MB for ``/bin/true``). So each run goes
through a tiny launcher (``python -S``, ~5 MB) that forks the benchmark from its own small address
space and reports the child's ``wait4`` rusage. The floor of the figure is the launcher's ~5 MB.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from device_agents.llamacpp.commands import BenchSettings, build_commands, validate_model
from device_agents.llamacpp.flags import LlamaBenchFlags, parse_help
from device_agents.llamacpp.results import RunOutcome, assemble_context
from device_agents.protocol import RemeasurePolicy
from device_agents.schemas import (
    BenchReport,
    Conditions,
    ContextMeasurement,
    RuntimeSettings,
    Thermal,
)

if TYPE_CHECKING:
    from device_agents.measure_policy import Attempt
    from device_agents.quiet import QuietGate

# argv: result file, RLIMIT_AS bytes (0 = none), the owner's pid, then the command. Stdlib only.
# The launcher and the benchmark end with their owner, even when the owner is SIGKILLed:
# PR_SET_PDEATHSIG asks the kernel to signal the launcher when its parent dies (SIGTERM, which
# it forwards), and the benchmark when the launcher dies (SIGKILL). A parent that died before
# the request is caught by comparing getppid() with the owner's pid.
_LAUNCHER = r"""
import ctypes, json, os, resource, signal, sys
out, limit, owner, argv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
PR_SET_PDEATHSIG = 1
def die_with_parent(signum, parent):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(128 + signum)
die_with_parent(signal.SIGTERM, owner)
me = os.getpid()
pid = os.fork()
if pid == 0:
    try:
        die_with_parent(signal.SIGKILL, me)
        if limit > 0:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.execv(argv[0], argv)
    except BaseException as exc:
        os.write(2, ("cannot start %s: %s\n" % (argv[0], exc)).encode())
    os._exit(127)
def forward(signum, frame):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(signum, forward)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as handle:
    json.dump({"status": status, "maxrss_kib": usage.ru_maxrss}, handle)
"""


def run_process(
    argv: Sequence[str],
    *,
    timeout_s: float | None = None,
    memory_limit_bytes: int | None = None,
    cancel: threading.Event | None = None,
) -> RunOutcome:
    """Run ``argv`` to completion; its own peak RSS from wait4 (ru_maxrss is KiB on Linux).

    The launcher runs in its own process group (so that a deadline kills launcher and benchmark
    together) but not in its own session, and it dies with this process: stopping ``star bench``
    or an agent, by a signal or an exception, stops the benchmark it started. ``cancel`` set
    while it runs kills it too (the outcome is then ``timed_out`` with "cancelled" on stderr).
    """
    argv = [str(a) for a in argv]
    with tempfile.TemporaryDirectory(prefix="star-bench-") as tmp:
        usage_file = Path(tmp) / "usage.json"
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        cmd = [sys.executable, "-S", "-I", "-c", _LAUNCHER, str(usage_file),
               str(memory_limit_bytes or 0), str(os.getpid()), *argv]
        started = time.monotonic()
        deadline = None if timeout_s is None else started + timeout_s
        timed_out = cancelled = False
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    process_group=0)
            try:
                while True:
                    # never one long blocking wait: a SIGINT that lands just before a blocking
                    # waitpid() is not seen until the benchmark ends (no EINTR), so Ctrl-C of
                    # `star bench` would wait out the whole benchmark
                    step = _WAIT_STEP_S
                    if deadline is not None:
                        step = min(step, deadline - time.monotonic())
                    try:
                        proc.wait(timeout=max(step, 0.0))
                        break
                    except subprocess.TimeoutExpired:
                        if deadline is not None and time.monotonic() >= deadline:
                            timed_out = True
                        elif cancel is not None and cancel.is_set():
                            timed_out = cancelled = True
                        else:
                            continue
                        _kill_group(proc)
                        break
            except BaseException:  # KeyboardInterrupt, SystemExit from a signal handler, ...
                _kill_group(proc)
                raise
        wall = time.monotonic() - started
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
        if cancelled:
            stderr += "\ncancelled: the measurement was stopped\n"
        try:
            usage = json.loads(usage_file.read_text())
        except (OSError, ValueError):
            usage = None
    if usage is not None:
        returncode = os.waitstatus_to_exitcode(usage["status"])
        peak = int(usage["maxrss_kib"]) * 1024 or None
    else:  # the launcher itself failed or was killed
        returncode, peak = (proc.returncode if proc.returncode is not None else -9), None
    return RunOutcome(argv=tuple(argv), returncode=returncode, stdout=stdout, stderr=stderr,
                      peak_rss_bytes=peak, wall_s=wall, timed_out=timed_out)


_WAIT_STEP_S = 0.2  # how often a running benchmark checks ``cancel`` and pending signals


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the launcher's process group (launcher and benchmark) and reap the launcher."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@functools.lru_cache(maxsize=8)
def _detect(path: str, _mtime: float) -> LlamaBenchFlags:
    proc = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60)
    return parse_help(proc.stdout + proc.stderr)


def detect_flags(llama_bench: str | Path) -> LlamaBenchFlags:
    """The flag spellings of this llama-bench binary (cached per path and mtime)."""
    path = Path(llama_bench)
    return _detect(str(path), path.stat().st_mtime)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ("" if unknown)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Model"):
                return value.strip()
    except OSError:
        pass
    return ""


def read_thermal() -> Thermal | None:
    """Temperatures from /sys/class/thermal (None where the host exposes none, as in VMs)."""
    zones: dict[str, float] = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        try:
            millideg = int((zone / "temp").read_text().strip())
            name = (zone / "type").read_text().strip() or zone.name
        except (OSError, ValueError):
            continue
        zones[f"{zone.name}:{name}"] = millideg / 1000.0
    return Thermal(zones=zones) if zones else None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def measure_context(
    flags: LlamaBenchFlags,
    model_path: str,
    context: int,
    settings: BenchSettings,
    llama_bench: str,
    *,
    timeout_s: float | None = None,
    memory_limit_bytes: int | None = None,
    cancel: threading.Event | None = None,
) -> tuple[ContextMeasurement, str | None]:
    """Both runs at one context, once; returns the measurement and the commit llama-bench
    reported. (``run_local_bench`` goes through ``LocalContextRunner`` and the policy.)"""
    attempt = LocalContextRunner(flags, model_path, settings, llama_bench, timeout_s=timeout_s,
                                 memory_limit_bytes=memory_limit_bytes,
                                 cancel=cancel).measure_once(context)  # fmt: skip
    return attempt.measurement, attempt.commit


def settle(quiet: QuietGate | None) -> Conditions:
    """A local runner's wait before a try: the quiet gate's, or none (load recorded)."""
    if quiet is None:
        return Conditions(load_1m=round(os.getloadavg()[0], 3), note="no quiet wait")
    return quiet.wait()


def run_pair(
    ttft_cmd: Sequence[str],
    decode_cmd: Sequence[str],
    *,
    timeout_s: float | None = None,
    memory_limit_bytes: int | None = None,
    cancel: threading.Event | None = None,
) -> tuple[RunOutcome, RunOutcome | None, Thermal | None, Thermal | None]:
    """One try at one context on this machine, for any runtime: the prefill process, then the
    decode process only if the prefill succeeded (a failed prefill at C fails decode too), with
    the thermal state before and after. Returns (ttft, decode or None, before, after)."""
    before = read_thermal()
    ttft = run_process(ttft_cmd, timeout_s=timeout_s, memory_limit_bytes=memory_limit_bytes,
                       cancel=cancel)
    decode = None
    if ttft.returncode == 0 and not ttft.timed_out:
        decode = run_process(decode_cmd, timeout_s=timeout_s,
                             memory_limit_bytes=memory_limit_bytes, cancel=cancel)
    return ttft, decode, before, read_thermal()


class LocalContextRunner:
    """``measure_policy.ContextRunner`` for this machine: two local processes per try, and a
    quiet-machine wait (``quiet``: a ``QuietGate``; None: measure at once) before each try."""

    def __init__(
        self,
        flags: LlamaBenchFlags,
        model_path: str,
        settings: BenchSettings,
        llama_bench: str,
        *,
        timeout_s: float | None = None,
        memory_limit_bytes: int | None = None,
        cancel: threading.Event | None = None,
        quiet: QuietGate | None = None,
    ) -> None:
        self.flags = flags
        self.model_path = model_path
        self.settings = settings
        self.llama_bench = llama_bench
        self.timeout_s = timeout_s
        self.memory_limit_bytes = memory_limit_bytes
        self.cancel = cancel
        self.quiet = quiet

    def settle(self) -> Conditions:
        return settle(self.quiet)

    def measure_once(self, context: int) -> Attempt:
        from device_agents.measure_policy import Attempt, outcome_of

        ttft_cmd, decode_cmd = build_commands(self.flags, self.model_path, context,
                                              self.settings, llama_bench=self.llama_bench)
        ttft, decode, before, after = run_pair(
            ttft_cmd, decode_cmd, timeout_s=self.timeout_s,
            memory_limit_bytes=self.memory_limit_bytes, cancel=self.cancel)
        measurement, parsed = assemble_context(context, ttft, decode, thermal_before=before,
                                               thermal_after=after)
        return Attempt(measurement, outcome_of(ttft, decode, measurement),
                       parsed.build_commit if parsed else None)


def run_local_bench(
    model_path: str | Path,
    contexts: Sequence[int],
    settings: BenchSettings,
    llama_bench_path: str | Path,
    *,
    build_flags: Sequence[str] = (),
    commit: str | None = None,
    timeout_s: float | None = None,
    memory_limit_bytes: int | None = None,
    remeasure: RemeasurePolicy | None = None,
    quiet: QuietGate | None = None,
    cancel: threading.Event | None = None,
) -> BenchReport:
    """Measure ``model_path`` at each context on this machine, by ``measure_policy``'s rule.

    Raises BenchInputError for invalid input (before any process starts) and
    UnsupportedFlagError if the binary cannot pin a setting. A context that runs out of memory is
    reported ``oom``, and larger contexts are then not run (nor after a timeout); any other
    failure at a context is that context's ``error``. ``remeasure`` (default: one try, no
    re-measurement) and ``quiet`` (default: no wait) are the policy's; ``cancel`` stops the run
    (``measure_policy.Cancelled``). ``commit``: the build's commit, used only if llama-bench
    reports none (all contexts failed).
    """
    from device_agents.measure_policy import measure_contexts

    model = Path(model_path)
    validate_model(model, list(contexts), n_gen=settings.n_gen)
    flags = detect_flags(llama_bench_path)
    runner = LocalContextRunner(flags, str(model), settings, str(llama_bench_path),
                                timeout_s=timeout_s, memory_limit_bytes=memory_limit_bytes,
                                cancel=cancel, quiet=quiet)  # fmt: skip
    result = measure_contexts(contexts, runner, remeasure or RemeasurePolicy(max_tries=1),
                              cancel=cancel)  # fmt: skip
    runtime = RuntimeSettings(
        llama_cpp_commit=result.commit or commit or "unknown",
        build_flags=list(build_flags),
        threads=settings.threads,
        cpu_mask=settings.cpu_mask,
        flash_attn=settings.flash_attn,
        cache_type_k=settings.cache_type_k,
        cache_type_v=settings.cache_type_v,
        n_gen=settings.n_gen,
        repetitions=settings.repetitions,
        cpu_model=cpu_model(),
        mmap=settings.mmap,
        warmup_below=settings.warmup_below,
    )
    return BenchReport(
        model_sha256=file_sha256(model),
        model_bytes=model.stat().st_size,
        runtime=runtime,
        contexts=result.measurements,
    )
