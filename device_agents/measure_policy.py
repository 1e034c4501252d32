"""The one measurement rule every device follows: which contexts run, which are re-measured,
which figure is kept.

``star bench``, the x86 agent and the Android agent differ only in *how* one context is measured
(a local process, a detached process on a phone) and *how* the device is settled before it (a
quiet-machine wait, a cool-down wait). Both are behind the ``ContextRunner`` protocol; everything
else is decided here, once:

1. Contexts run in the job's order. Once a context ends in ``OOM`` or ``TIMEOUT``, every *larger*
   context is ``SKIPPED`` (it needs more memory and more time still); smaller ones still run.
   The reason is typed (``Outcome``), never read back from an error string.
2. Before each try the runner settles the device (``settle``) and says what it saw
   (``Conditions``: load, steal, other processes' CPU, temperature, how long it waited, whether
   it gave up waiting).
3. A successful try whose figure is *noisy* (stddev / median of TTFT or decode above
   ``RemeasurePolicy.noisy_cv``) or *hot* (a thermal zone above ``hot_celsius`` before or after)
   is measured again, up to ``max_tries`` tries in all. A failed try is not retried here: an OOM
   or a crash is a result, and a job that failed for other reasons is retried by the coordinator.
4. The kept figure is the least noisy try that was not hot (the least noisy of all if every try
   was hot); its ``tries`` is the number of tries taken, and its ``Conditions.note`` says which
   try was kept and why the others were not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from device_agents.llamacpp.results import RunOutcome, classify_failure
from device_agents.protocol import RemeasurePolicy
from device_agents.schemas import Conditions, ContextMeasurement


class Outcome(StrEnum):
    """How one context ended. ``SKIPPED``: not run, because a smaller context ran out of memory
    or time (the measurement's ``oom`` says which)."""

    OK = "ok"
    OOM = "oom"
    TIMEOUT = "timeout"
    ERROR = "error"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def stops_larger(self) -> bool:
        """Does this outcome mean a larger context cannot succeed either?"""
        return self in (Outcome.OOM, Outcome.TIMEOUT)


class Cancelled(Exception):
    """The measurement was stopped from outside (the agent is stopping, the lease is gone)."""


def outcome_of(ttft: RunOutcome, decode: RunOutcome | None, measurement: ContextMeasurement
               ) -> Outcome:  # fmt: skip
    """The typed outcome of one context's runs (``decode`` None: not run after a failed prefill).

    Uses the process facts (``timed_out``, exit status, stderr) through ``classify_failure``, the
    same classification that produced the measurement."""
    for run in (ttft, decode):
        if run is None:
            continue
        if run.timed_out:
            return Outcome.TIMEOUT
        failure = classify_failure(run)
        if failure is not None:
            return Outcome.OOM if failure[0] == "oom" else Outcome.ERROR
    if measurement.oom:
        return Outcome.OOM
    return Outcome.ERROR if measurement.error is not None else Outcome.OK


@dataclass(frozen=True)
class Attempt:
    """One try at one context: the measurement, its typed outcome, the commit llama-bench said."""

    measurement: ContextMeasurement
    outcome: Outcome
    commit: str | None = None
    extra_wait_s: float = 0.0  # settling inside the try (a phone cools down between processes)


class ContextRunner(Protocol):
    """What a device provides to the policy."""

    def settle(self) -> Conditions:
        """Wait until the device is fit to measure (quiet, cool) or a timeout; say what was seen."""
        ...

    def measure_once(self, context: int) -> Attempt:
        """Both benchmark processes at ``context``, once."""
        ...


def noise(measurement: ContextMeasurement) -> float:
    """The larger coefficient of variation of the two timed figures (0 when there are none)."""
    stats = [s for s in (measurement.ttft_ms, measurement.decode_ms_per_token) if s is not None]
    return max((s.cv for s in stats), default=0.0)


def hottest(measurement: ContextMeasurement) -> float | None:
    """The hottest zone seen before or after the runs, in degrees C (None: no zone readable)."""
    values = [t.max_c for t in (measurement.thermal_before, measurement.thermal_after)
              if t is not None and t.max_c is not None]  # fmt: skip
    return max(values) if values else None


def flaws(measurement: ContextMeasurement, policy: RemeasurePolicy) -> list[str]:
    """Why this (successful) figure should not be trusted as is: noisy and/or hot."""
    found = []
    for name, stat in (("TTFT", measurement.ttft_ms), ("decode", measurement.decode_ms_per_token)):
        if stat is not None and stat.cv > policy.noisy_cv:
            found.append(f"{name} cv {stat.cv:.2f} > {policy.noisy_cv:.2f}")
    hot = hottest(measurement)
    if hot is not None and hot > policy.hot_celsius:
        found.append(f"{hot:.1f} C > {policy.hot_celsius:.1f} C")
    return found


def pick(tries: Sequence[ContextMeasurement], policy: RemeasurePolicy) -> int:
    """Index of the figure to keep: the least noisy of the tries that were not hot, else the
    least noisy of all; the earliest on a tie."""
    def is_hot(m: ContextMeasurement) -> bool:
        hot = hottest(m)
        return hot is not None and hot > policy.hot_celsius

    return min(range(len(tries)), key=lambda i: (is_hot(tries[i]), noise(tries[i]), i))


@dataclass(frozen=True)
class PolicyResult:
    measurements: list[ContextMeasurement]
    outcomes: list[Outcome]
    commit: str | None  # the first build commit llama-bench reported (None: none ran)


def measure_contexts(
    contexts: Sequence[int],
    runner: ContextRunner,
    policy: RemeasurePolicy,
    *,
    cancel: threading.Event | None = None,
    deadline: float | None = None,
    log: Callable[[str], None] | None = None,
) -> PolicyResult:
    """Measure every context by the rule in the module docstring.

    ``deadline`` (``time.monotonic()``) stops re-measurement (never a first try: the runner's
    own deadlines bound those); ``cancel`` raises ``Cancelled`` between tries and is also the
    runner's to honour inside one.
    """
    measurements: list[ContextMeasurement] = []
    outcomes: list[Outcome] = []
    commit: str | None = None
    stop: tuple[int, Outcome] | None = None  # the smallest context that ran out of memory/time
    for context in contexts:
        if stop is not None and context > stop[0]:
            failed, why = stop
            reason = (f"not run: out of memory at context {failed}" if why is Outcome.OOM
                      else f"not run: context {failed} exceeded its deadline")  # fmt: skip
            measurements.append(ContextMeasurement(context=context, oom=why is Outcome.OOM,
                                                   error=reason))  # fmt: skip
            outcomes.append(Outcome.SKIPPED)
            continue
        kept, outcome, seen = _measure_one(context, runner, policy, cancel, deadline, log)
        measurements.append(kept)
        outcomes.append(outcome)
        commit = commit or seen
        if outcome.stops_larger and (stop is None or context < stop[0]):
            stop = (context, outcome)
    return PolicyResult(measurements, outcomes, commit)


def _measure_one(
    context: int,
    runner: ContextRunner,
    policy: RemeasurePolicy,
    cancel: threading.Event | None,
    deadline: float | None,
    log: Callable[[str], None] | None,
) -> tuple[ContextMeasurement, Outcome, str | None]:
    good: list[tuple[ContextMeasurement, Conditions]] = []
    reasons: list[str] = []
    commit: str | None = None
    tries = 0
    while tries < policy.max_tries:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"stopped before context {context} try {tries + 1}")
        conditions = runner.settle()
        attempt = runner.measure_once(context)
        if attempt.extra_wait_s:
            conditions = conditions.model_copy(
                update={"waited_s": round(conditions.waited_s + attempt.extra_wait_s, 2)})
        tries += 1
        commit = commit or attempt.commit
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"stopped during context {context} try {tries}")
        if attempt.outcome is not Outcome.OK:
            if not good:  # nothing trustworthy measured: the failure is the result
                failed = attempt.measurement.model_copy(
                    update={"tries": tries, "conditions": conditions})
                return failed, attempt.outcome, commit
            reasons.append(f"try {tries}: {attempt.outcome.value}")
            break
        good.append((attempt.measurement, conditions))
        found = flaws(attempt.measurement, policy)
        if not found:
            break
        reasons.append(f"try {tries}: {', '.join(found)}")
        if log is not None:
            log(f"context {context}: {', '.join(found)}; measuring again"
                if tries < policy.max_tries else f"context {context}: {', '.join(found)}")
        if deadline is not None and time.monotonic() >= deadline:
            reasons.append("no time left to measure again")
            break
    index = pick([m for m, _ in good], policy)
    measurement, conditions = good[index]
    note = conditions.note
    if tries > 1:
        summary = f"kept try {index + 1} of {tries} (least noisy); " + "; ".join(reasons)
        note = f"{note}; {summary}" if note else summary
    conditions = conditions.model_copy(update={"note": note[:500] if note else None})
    kept = measurement.model_copy(update={"tries": tries, "conditions": conditions})
    return kept, Outcome.OK, commit
