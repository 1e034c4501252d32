"""Turn llama-bench output and process outcomes into ``ContextMeasurement``s: pure, no processes.

The local runner (``local.py``) and the Android agent both produce a ``RunOutcome`` per process
(exit status, output, peak RSS measured their own way) and hand it to ``assemble_context``.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from device_agents.schemas import ContextMeasurement, Stat, Thermal


class BenchParseError(ValueError):
    """llama-bench's JSON output is missing, malformed or lacks a required field."""


@dataclass(frozen=True)
class LlamaBenchResult:
    """One test of a llama-bench ``-o json`` run, read by field name."""

    n_prompt: int
    n_gen: int
    n_depth: int
    samples_ns: tuple[int, ...]
    build_commit: str
    build_number: int
    n_threads: int
    type_k: str
    type_v: str
    flash_attn: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class RunOutcome:
    """What one benchmark process did. ``returncode`` follows subprocess: -N = killed by signal N
    (a shell in between reports 128 + N instead)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int | None  # high-water mark of the process itself, None if unknown
    wall_s: float
    timed_out: bool = False


_REQUIRED = ("n_prompt", "n_gen", "samples_ns")

# llama.cpp / libstdc++ / libc wordings of a failed allocation; under RLIMIT_AS or a device
# without overcommit, running out of memory surfaces as one of these instead of a SIGKILL.
_OOM_PATTERNS = re.compile(
    r"std::bad_alloc|failed to allocate|unable to allocate|cannot allocate memory"
    r"|out of memory|insufficient memory|ggml_aligned_malloc|mmap failed|failed to mmap"
    r"|memory allocation failed|allocation of .* failed|mem_buffer != NULL|\bENOMEM\b",
    re.IGNORECASE,
)


def parse_llama_bench_json(text: str) -> list[LlamaBenchResult]:
    """Parse ``llama-bench -o json`` (a JSON array; JSON lines are accepted too)."""
    text = text.strip()
    if not text:
        raise BenchParseError("llama-bench printed no JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:  # -o jsonl, or a truncated array from a process that died mid-run
            data = [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
        except json.JSONDecodeError as exc:
            raise BenchParseError(f"llama-bench output is not JSON: {exc}") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise BenchParseError("llama-bench JSON holds no test results")
    results = []
    for entry in data:
        if not isinstance(entry, dict):
            raise BenchParseError("llama-bench JSON: a test result is not an object")
        missing = [name for name in _REQUIRED if name not in entry]
        if missing:
            raise BenchParseError(f"llama-bench JSON lacks {', '.join(missing)}")
        samples = entry["samples_ns"]
        if not isinstance(samples, list) or not samples:
            raise BenchParseError("llama-bench JSON: samples_ns is empty")
        results.append(
            LlamaBenchResult(
                n_prompt=int(entry["n_prompt"]),
                n_gen=int(entry["n_gen"]),
                n_depth=int(entry.get("n_depth", 0)),
                samples_ns=tuple(int(s) for s in samples),
                build_commit=str(entry.get("build_commit", "unknown")),
                build_number=int(entry.get("build_number", 0)),
                n_threads=int(entry.get("n_threads", 0)),
                type_k=str(entry.get("type_k", "")),
                type_v=str(entry.get("type_v", "")),
                flash_attn=str(entry.get("flash_attn", "")),
                raw=entry,
            )
        )
    return results


def stat_ms(samples_ns: Sequence[float], *, per: int = 1) -> Stat:
    """Samples in ns (each covering ``per`` tokens) -> Stat in ms (per token)."""
    values = [s / per / 1e6 for s in samples_ns]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return Stat(median=statistics.median(values), stddev=spread, samples=values)


def classify_failure(outcome: RunOutcome) -> tuple[str, str] | None:
    """None if the run succeeded; else ("oom" | "error", one-line reason)."""
    if outcome.timed_out:
        return "error", f"timed out after {outcome.wall_s:.0f} s: {stderr_tail(outcome.stderr)}"
    if outcome.returncode == 0:
        return None
    if outcome.returncode in (-9, 137):  # SIGKILL: the kernel OOM killer / Android's LMK
        return "oom", f"killed by SIGKILL (exit {outcome.returncode})"
    if _OOM_PATTERNS.search(outcome.stderr):
        return "oom", f"allocation failed: {stderr_tail(outcome.stderr, _OOM_PATTERNS)}"
    if outcome.returncode in (-4, 132):  # SIGILL: built for an ISA this CPU does not have
        return "error", (f"illegal instruction (exit {outcome.returncode}): the binary needs CPU "
                         "features this device lacks (on a phone: the android-arm64-compat build)")
    return "error", f"exit {outcome.returncode}: {stderr_tail(outcome.stderr)}"


def stderr_tail(stderr: str, pattern: re.Pattern[str] | None = None, lines: int = 3) -> str:
    """The last few non-empty lines (or the last line matching ``pattern``), joined on one line."""
    kept = [line.strip() for line in stderr.splitlines() if line.strip()]
    if pattern is not None:
        matching = [line for line in kept if pattern.search(line)]
        if matching:
            return matching[-1][:300]
    return " | ".join(kept[-lines:])[-600:] or "(no output)"


def _pick(results: list[LlamaBenchResult], *, decode: bool, context: int) -> LlamaBenchResult:
    for result in results:
        if decode and result.n_gen > 0 and result.n_prompt == 0 and result.n_depth == context:
            return result
        if not decode and result.n_prompt == context and result.n_gen == 0:
            return result
    what = f"tg @ d{context}" if decode else f"pp{context}"
    raise BenchParseError(f"llama-bench JSON has no {what} test")


def assemble_context(
    context: int,
    ttft: RunOutcome,
    decode: RunOutcome | None,
    *,
    thermal_before: Thermal | None = None,
    thermal_after: Thermal | None = None,
) -> tuple[ContextMeasurement, LlamaBenchResult | None]:
    """One context's measurement from its two runs (``decode`` None: not run, TTFT failed).

    Peak RSS is the high-water mark of the prefill (TTFT) process: it holds the weights, a KV
    cache sized for exactly C tokens and the compute buffers, i.e. what serving C tokens of
    context costs. The decode process is not used for it: to reuse the depth prefill across
    repetitions, llama-bench keeps a host copy of the C-token sequence state beside the live KV
    cache, so its peak exceeds the prefill's by about one KV cache (measured: +15.6 MiB for a
    16 MiB cache at C = 8000), an artefact of the benchmark rather than of inference. Either run
    failing for lack of memory still makes the context ``oom``. Returns the parsed TTFT result
    too (for the build commit llama-bench reports).
    """
    failed = failed_context(context, ttft, decode, thermal_before=thermal_before,
                            thermal_after=thermal_after)
    if failed is not None:
        return failed, None
    assert decode is not None
    try:
        pp = _pick(parse_llama_bench_json(ttft.stdout), decode=False, context=context)
        tg = _pick(parse_llama_bench_json(decode.stdout), decode=True, context=context)
    except BenchParseError as exc:
        return ContextMeasurement(context=context, thermal_before=thermal_before,
                                  thermal_after=thermal_after, error=str(exc)), None
    result = measured_context(context, pp.samples_ns, tg.samples_ns, tg.n_gen,
                              ttft.peak_rss_bytes, thermal_before=thermal_before,
                              thermal_after=thermal_after)
    return result, pp


def failed_context(
    context: int,
    ttft: RunOutcome,
    decode: RunOutcome | None,
    *,
    thermal_before: Thermal | None = None,
    thermal_after: Thermal | None = None,
) -> ContextMeasurement | None:
    """The measurement of a context whose prefill or decode process failed (``oom``, or the
    ``error`` naming the run and why), or None when both ran. Shared by every runtime's
    ``assemble_context``: one rule for what a failed benchmark process means."""
    for outcome in (ttft, decode):
        if outcome is None:
            continue
        failure = classify_failure(outcome)
        if failure is not None:
            kind, reason = failure
            if kind == "oom":
                return ContextMeasurement(context=context, thermal_before=thermal_before,
                                          thermal_after=thermal_after, oom=True)
            which = "prefill" if outcome is ttft else "decode"
            return ContextMeasurement(context=context, thermal_before=thermal_before,
                                      thermal_after=thermal_after,
                                      error=f"{which} run: {reason}")
    if decode is None:
        raise ValueError("assemble_context needs the decode run when the prefill run succeeded")
    return None


def measured_context(
    context: int,
    ttft_samples_ns: Sequence[float],
    decode_samples_ns: Sequence[float],
    n_gen: int,
    peak_rss_bytes: int | None,
    *,
    thermal_before: Thermal | None = None,
    thermal_after: Thermal | None = None,
) -> ContextMeasurement:
    """A context both of whose runs succeeded: TTFT, decode per token, the prefill's peak RSS."""
    peak = peak_rss_bytes or None
    return ContextMeasurement(
        context=context, thermal_before=thermal_before, thermal_after=thermal_after,
        ttft_ms=stat_ms(ttft_samples_ns),
        decode_ms_per_token=stat_ms(decode_samples_ns, per=n_gen),
        peak_rss_bytes=peak,
        error=None if peak else "peak RSS of the prefill run could not be measured",
    )
