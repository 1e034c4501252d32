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
import time
from collections.abc import Sequence
from pathlib import Path

from device_agents.llamacpp.commands import BenchSettings, build_commands, validate_model
from device_agents.llamacpp.flags import LlamaBenchFlags, parse_help
from device_agents.llamacpp.results import RunOutcome, assemble_context
from device_agents.schemas import BenchReport, ContextMeasurement, RuntimeSettings, Thermal

# argv: result file, RLIMIT_AS bytes (0 = none), then the command. Stdlib only, no site.
_LAUNCHER = r"""
import json, os, resource, signal, sys
out, limit, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
pid = os.fork()
if pid == 0:
    try:
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
) -> RunOutcome:
    """Run ``argv`` to completion; its own peak RSS from wait4 (ru_maxrss is KiB on Linux)."""
    argv = [str(a) for a in argv]
    with tempfile.TemporaryDirectory(prefix="star-bench-") as tmp:
        usage_file = Path(tmp) / "usage.json"
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        cmd = [sys.executable, "-S", "-I", "-c", _LAUNCHER, str(usage_file),
               str(memory_limit_bytes or 0), *argv]
        started = time.monotonic()
        timed_out = False
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # launcher and benchmark together
                proc.wait()
        wall = time.monotonic() - started
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
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
) -> tuple[ContextMeasurement, str | None]:
    """Both runs at one context; returns the measurement and the commit llama-bench reported."""
    ttft_cmd, decode_cmd = build_commands(flags, model_path, context, settings,
                                          llama_bench=llama_bench)
    before = read_thermal()
    ttft = run_process(ttft_cmd, timeout_s=timeout_s, memory_limit_bytes=memory_limit_bytes)
    decode = None
    if ttft.returncode == 0 and not ttft.timed_out:  # a failed prefill at C fails decode too
        decode = run_process(decode_cmd, timeout_s=timeout_s,
                             memory_limit_bytes=memory_limit_bytes)
    measurement, parsed = assemble_context(context, ttft, decode, thermal_before=before,
                                           thermal_after=read_thermal())
    return measurement, parsed.build_commit if parsed else None


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
) -> BenchReport:
    """Measure ``model_path`` at each context on this machine.

    Raises BenchInputError for invalid input (before any process starts) and
    UnsupportedFlagError if the binary cannot pin a setting. A context that runs out of memory is
    reported ``oom``; any other failure at a context is that context's ``error``.
    ``commit``: the build's commit, used only if llama-bench reports none (all contexts failed).
    """
    model = Path(model_path)
    validate_model(model, list(contexts), n_gen=settings.n_gen)
    flags = detect_flags(llama_bench_path)
    measurements: list[ContextMeasurement] = []
    reported: str | None = None
    for context in contexts:
        measurement, seen = measure_context(
            flags, str(model), context, settings, str(llama_bench_path),
            timeout_s=timeout_s, memory_limit_bytes=memory_limit_bytes,
        )
        measurements.append(measurement)
        reported = reported or seen
    runtime = RuntimeSettings(
        llama_cpp_commit=reported or commit or "unknown",
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
    )
    return BenchReport(
        model_sha256=file_sha256(model),
        model_bytes=model.stat().st_size,
        runtime=runtime,
        contexts=measurements,
    )
