"""Overhead of ``star bench`` (Python API) over bare llama-bench, same GGUF, context and flags.

    python bench/measure_overhead.py [--model M.gguf] [--context 256] [--rounds 5]

Both sides run the same two llama-bench command lines per context (prefill ``-p C -n 0`` and
decode ``-p 0 -n M -d C``). ``star bench`` adds input validation (GGUF header), the model's
sha256, flag detection (``--help``, cached per binary), the RSS launcher (one ``python -S`` per
process), thermal reads and report assembly. Rounds alternate the order of the two sides.
Besides wall time, CPU time (user + system of this process and all its children) is reported,
and minima beside medians: on a shared, busy machine both are far less noisy than median wall
time. Not a test: prints medians, minima and the ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_agents.llamacpp import local  # noqa: E402
from device_agents.llamacpp.commands import BenchSettings, build_commands  # noqa: E402
from star.runtime import ensure_runtime  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF (default: a tiny random llama model)")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="llama-bench -r")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    info = ensure_runtime()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from tests.runtime.tiny_gguf import write_tiny_gguf

            model = write_tiny_gguf(Path(tmp) / "tiny.gguf")
        size = model.stat().st_size
        settings = BenchSettings(threads=args.threads, n_gen=32, repetitions=args.repeats)
        flags = local.detect_flags(info.llama_bench)
        commands = build_commands(flags, str(model), args.context, settings,
                                  llama_bench=str(info.llama_bench))

        def bare() -> None:
            for cmd in commands:
                subprocess.run(cmd, capture_output=True, check=True)

        def star() -> None:
            report = local.run_local_bench(model, [args.context], settings, info.llama_bench,
                                           build_flags=info.build_flags)
            assert report.contexts[0].error is None, report.contexts[0].error

        local._detect.cache_clear()
        cold, _ = timed(star)  # includes detecting the flags from --help
        timed(bare)  # warm the page cache for both sides
        wall: dict[str, list[float]] = {"bare": [], "star": []}
        cpu: dict[str, list[float]] = {"bare": [], "star": []}
        for i in range(args.rounds):
            order = (("bare", bare), ("star", star)) if i % 2 == 0 else (("star", star),
                                                                           ("bare", bare))
            for name, fn in order:
                w, c = timed(fn)
                wall[name].append(w)
                cpu[name].append(c)

    print(f"llama.cpp {info.commit}  model {size / 2**20:.1f} MiB  context {args.context}  "
          f"llama-bench -r {args.repeats}  threads {args.threads}  rounds {args.rounds}  "
          f"load average {os.getloadavg()[0]:.2f}")
    for label, table in (("wall", wall), ("CPU", cpu)):
        bare_med, star_med = statistics.median(table["bare"]), statistics.median(table["star"])
        print(f"{label:4} bare llama-bench (2 processes): median {bare_med * 1000:8.1f} ms  "
              f"samples {[round(t * 1000) for t in table['bare']]}")
        print(f"{label:4} star bench (Python API):        median {star_med * 1000:8.1f} ms  "
              f"samples {[round(t * 1000) for t in table['star']]}")
        bare_min, star_min = min(table["bare"]), min(table["star"])
        print(f"{label:4} overhead (medians) {(star_med - bare_med) * 1000:+.1f} ms, ratio "
              f"star/bare {star_med / bare_med:.3f}; (minima) {bare_min * 1000:.1f} -> "
              f"{star_min * 1000:.1f} ms, {(star_min - bare_min) * 1000:+.1f} ms, ratio "
              f"{star_min / bare_min:.3f}")
    print(f"first star bench call (flag detection, cold): {cold * 1000:.1f} ms wall")


def _cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its reaped children) of one call."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    fn()
    return time.perf_counter() - wall, _cpu_seconds() - cpu


if __name__ == "__main__":
    main()
