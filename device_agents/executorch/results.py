"""Turn ``star-et-bench`` output and process outcomes into ``ContextMeasurement``s (pure).

The runner prints one JSON object on stdout (its last line starting with "{"); failures are
classified exactly as for llama-bench (``device_agents.llamacpp.results.classify_failure``): a
SIGKILL or an allocation failure is out of memory, anything else an error with stderr's tail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from device_agents.llamacpp.results import RunOutcome, failed_context, measured_context
from device_agents.schemas import ContextMeasurement, Thermal

RUNNER_FORMAT = 1  # the JSON format this module reads (the runner's kFormat)


class RunnerParseError(ValueError):
    """The runner's JSON is missing, malformed, of another format, or lacks a field."""


@dataclass(frozen=True)
class PteInfo:
    """What ``star-et-bench MODEL info`` says about a program."""

    executorch_version: str
    max_context: int  # prompt + generated tokens the program holds
    prefill_chunk: int
    vocab_size: int
    planned_bytes: int  # activation + state arenas at their upper bound
    state_bytes: int  # the state arena (KV caches at max_context, recurrent states)


@dataclass(frozen=True)
class RunnerResult:
    """One ``ttft`` or ``decode`` run."""

    mode: str
    context: int
    n_gen: int
    samples_ns: tuple[int, ...]
    executorch_version: str
    prefill_chunk: int
    load_ms: float
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _last_object(text: str) -> dict[str, Any]:
    lines = [line for line in text.strip().splitlines() if line.lstrip().startswith("{")]
    if not lines:
        raise RunnerParseError("star-et-bench printed no JSON")
    try:
        data = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise RunnerParseError(f"star-et-bench output is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RunnerParseError("star-et-bench JSON is not an object")
    if data.get("runner") != "star-et-bench" or data.get("format") != RUNNER_FORMAT:
        raise RunnerParseError(
            f"not star-et-bench format {RUNNER_FORMAT} output (runner {data.get('runner')!r}, "
            f"format {data.get('format')!r}): rebuild the runner"
        )
    return data


def _require(data: dict[str, Any], *names: str) -> None:
    missing = [name for name in names if name not in data]
    if missing:
        raise RunnerParseError(f"star-et-bench JSON lacks {', '.join(missing)}")


def parse_info(text: str) -> PteInfo:
    data = _last_object(text)
    _require(data, "executorch_version", "max_context", "prefill_chunk", "vocab_size")
    return PteInfo(
        executorch_version=str(data["executorch_version"]),
        max_context=int(data["max_context"]),
        prefill_chunk=int(data["prefill_chunk"]),
        vocab_size=int(data["vocab_size"]),
        planned_bytes=int(data.get("planned_bytes", 0)),
        state_bytes=int(data.get("state_bytes", 0)),
    )


def parse_runner_json(text: str) -> RunnerResult:
    """One ttft/decode run's JSON (the last JSON line of stdout)."""
    data = _last_object(text)
    _require(data, "mode", "context", "samples_ns")
    samples = data["samples_ns"]
    if not isinstance(samples, list) or not samples:
        raise RunnerParseError("star-et-bench JSON: samples_ns is empty")
    return RunnerResult(
        mode=str(data["mode"]),
        context=int(data["context"]),
        n_gen=int(data.get("n_gen", 0)),
        samples_ns=tuple(int(s) for s in samples),
        executorch_version=str(data.get("executorch_version", "unknown")),
        prefill_chunk=int(data.get("prefill_chunk", 0)),
        load_ms=float(data.get("load_ms", 0.0)),
        raw=data,
    )


def assemble_context(
    context: int,
    ttft: RunOutcome,
    decode: RunOutcome | None,
    *,
    thermal_before: Thermal | None = None,
    thermal_after: Thermal | None = None,
) -> tuple[ContextMeasurement, RunnerResult | None]:
    """One context's measurement from its two runs (``decode`` None: not run, TTFT failed).

    Peak RSS is the prefill process's (see commands.py). Returns the parsed TTFT run too (it
    carries the ExecuTorch version the runner was built against).
    """

    def measurement(**fields: Any) -> ContextMeasurement:
        return ContextMeasurement(context=context, thermal_before=thermal_before,
                                  thermal_after=thermal_after, **fields)

    failed = failed_context(context, ttft, decode, thermal_before=thermal_before,
                            thermal_after=thermal_after)
    if failed is not None:
        return failed, None
    assert decode is not None
    try:
        pp = parse_runner_json(ttft.stdout)
        tg = parse_runner_json(decode.stdout)
    except RunnerParseError as exc:
        return measurement(error=str(exc)), None
    if (pp.mode, pp.context, tg.mode, tg.context) != ("ttft", context, "decode", context):
        return measurement(error=f"star-et-bench answered another run than context {context}"), None
    if tg.n_gen < 1:
        return measurement(error="star-et-bench decode run reports no generated tokens"), None
    result = measured_context(context, pp.samples_ns, tg.samples_ns, tg.n_gen,
                              ttft.peak_rss_bytes, thermal_before=thermal_before,
                              thermal_after=thermal_after)
    return result, pp
