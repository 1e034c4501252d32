"""One context, once, on a phone: the ``measure_policy.ContextRunner`` of ``AndroidDevice``.

``settle`` is the cool-down wait (what it saw becomes the measurement's ``Conditions``: waited,
reached or gave up, the phone's load and thermal status); ``measure_once`` runs the TTFT and the
decode process (detached, with a cool-down wait between them that is added to the wait) and
checks the commit llama-bench reports against the pinned one.
"""

from __future__ import annotations

import posixpath
import threading
from typing import TYPE_CHECKING

from device_agents.android.errors import RuntimeCommitMismatch
from device_agents.android.thermal import CoolDown
from device_agents.llamacpp.commands import BenchSettings, build_commands
from device_agents.llamacpp.flags import LlamaBenchFlags
from device_agents.llamacpp.results import (
    BenchParseError,
    RunOutcome,
    assemble_context,
    parse_llama_bench_json,
)
from device_agents.measure_policy import Attempt, outcome_of
from device_agents.schemas import Conditions

if TYPE_CHECKING:
    from device_agents.android.device import AndroidDevice

LLAMA_BENCH = "llama-bench"


class PhoneContextRunner:
    """``measure_policy.ContextRunner`` for a phone: cool-down waits and detached processes."""

    def __init__(
        self,
        device: AndroidDevice,
        flags: LlamaBenchFlags,
        remote_model: str,
        settings: BenchSettings,
        job_id: str,
        *,
        timeout_s: float,
        end: float | None,
        expected_commit: str | None,
        cancel: threading.Event | None,
    ) -> None:
        self.device = device
        self.flags = flags
        self.remote_model = remote_model
        self.settings = settings
        self.job_id = job_id
        self.timeout_s = timeout_s
        self.end = end
        self.expected_commit = expected_commit
        self.cancel = cancel
        self.exe = posixpath.join(device.root, "bin", LLAMA_BENCH)
        self._tries: dict[int, int] = {}

    def settle(self) -> Conditions:
        cool = self.device.wait_for_cooldown(stop=self.cancel)
        return _conditions(cool, self.device.profile.cool_down_below_c, self.device.load_1m())

    def measure_once(self, context: int) -> Attempt:
        n = self._tries[context] = self._tries.get(context, 0) + 1
        tag = f"c{context}" if n == 1 else f"c{context}-try{n}"
        ttft_cmd, decode_cmd = build_commands(
            self.flags, self.remote_model, context, self.settings, llama_bench=self.exe
        )
        before = self.device.thermal()
        ttft = self.device._run_one(ttft_cmd, self.job_id, f"{tag}-ttft", self.timeout_s,
                                    self.end, self.cancel)  # fmt: skip
        self._check_commit(ttft)
        decode: RunOutcome | None = None
        waited = 0.0
        if ttft.returncode == 0 and not ttft.timed_out:
            waited = self.device.wait_for_cooldown(stop=self.cancel).waited_s
            decode = self.device._run_one(decode_cmd, self.job_id, f"{tag}-decode",
                                          self.timeout_s, self.end, self.cancel)  # fmt: skip
        after = self.device.thermal()
        measurement, parsed = assemble_context(
            context, ttft, decode, thermal_before=before, thermal_after=after
        )
        return Attempt(measurement, outcome_of(ttft, decode, measurement),
                       parsed.build_commit if parsed else None, extra_wait_s=waited)

    def _check_commit(self, outcome: RunOutcome) -> None:
        if self.expected_commit is None or outcome.returncode != 0:
            return
        try:
            results = parse_llama_bench_json(outcome.stdout)
        except BenchParseError:
            return
        seen = results[0].build_commit
        if seen and seen != "unknown" and seen != self.expected_commit:
            raise RuntimeCommitMismatch(mismatch(self.device.serial, seen, self.expected_commit))


def mismatch(serial: str, built: str, pinned: str) -> str:
    """The refusal message: names the phone, both commits and the fix."""
    return (f"{serial}: the phone's llama-bench is llama.cpp commit {built}, but the "
            f"coordinator's pinned runtime is commit {pinned} (push the build of "
            "`star runtime build --target android-arm64`)")


def _conditions(cool: CoolDown, below_c: float, load_1m: float | None) -> Conditions:
    """What the cool-down wait saw, as the ``Conditions`` every device reports."""
    if cool.temperature_c is None:
        note = "no readable thermal zone: could not wait for cool-down"
    elif cool.reached:
        note = f"{cool.temperature_c:.1f} C < {below_c:.1f} C" + (
            f" after {cool.waited_s:.0f} s" if cool.waited_s >= 1 else "")
    else:
        note = f"still {cool.temperature_c:.1f} C (limit {below_c:.1f} C): measured anyway"
    if cool.thermal.status is not None:
        note += f"; thermal status {cool.thermal.status}"
    return Conditions(load_1m=load_1m if load_1m is None or load_1m >= 0 else None,
                      waited_s=round(cool.waited_s, 2), quiet=cool.reached, note=note)
