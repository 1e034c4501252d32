"""The x86 quiet-machine wait against a real busy process.

This machine is shared, so the tests restrict "other processes" to the busy process they start
(``HostSampler(include=...)``) and switch off the host-wide load and steal thresholds; the CPU
figures themselves are the kernel's (psutil), sampled over real windows.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil

from device_agents.quiet import HostSample, HostSampler, QuietGate, QuietThresholds

BUSY = [sys.executable, "-c", "while True: pass"]


def _only(pid: int) -> HostSampler:
    return HostSampler(include=lambda proc: proc.pid == pid)


def _foreign_busy_process() -> psutil.Process:
    """A CPU-bound process that is *not* this test's descendant (its shell parent exits, so it
    is re-parented), as a neighbour's job on a shared host would be."""
    launcher = subprocess.run(
        ["/bin/sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True,
    )
    return psutil.Process(int(launcher.stdout.strip()))


def _limits(**overrides: float) -> QuietThresholds:
    values: dict[str, float | None] = dict(max_load_1m=None, max_steal_pct=None,
                                           max_other_cpu_pct=5.0, timeout_s=60.0, sample_s=0.3)
    values.update(overrides)
    return QuietThresholds(**values)  # type: ignore[arg-type]


def test_own_children_are_not_other_processes() -> None:
    proc = subprocess.Popen(BUSY)
    try:
        sample = _only(proc.pid).sample(0.3)
        assert sample.other_cpu_pct == 0.0  # a child of this process: the agent's own work
    finally:
        proc.kill()
        proc.wait()


def test_quiet_wait_lasts_until_the_busy_process_ends() -> None:
    busy = _foreign_busy_process()
    pid = busy.pid
    samples: list[tuple[HostSample, list[str]]] = []
    seen_busy = threading.Event()

    def on_sample(sample: HostSample, too_busy: list[str]) -> None:
        samples.append((sample, too_busy))
        if too_busy:
            seen_busy.set()

    gate = QuietGate(_limits(), sampler=_only(pid), on_sample=on_sample)
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(gate.wait()))
    try:
        waiter.start()
        assert seen_busy.wait(30), "the gate never saw the busy process"
        assert waiter.is_alive()  # still waiting while it runs
        busy.kill()
        killed_at = time.monotonic()
        busy.wait(10)
        waiter.join(30)
        assert not waiter.is_alive()
    finally:
        if busy.is_running():
            busy.kill()
    (conditions,) = result
    assert conditions.quiet is True  # type: ignore[attr-defined]
    assert conditions.other_cpu_pct is not None and conditions.other_cpu_pct <= 5.0  # type: ignore[attr-defined]
    assert conditions.waited_s > 0  # type: ignore[attr-defined]
    assert samples[-1][0].at > killed_at and not samples[-1][1]
    assert samples[0][1] and "other processes" in samples[0][1][0]


def test_quiet_wait_times_out_and_says_so() -> None:
    busy = _foreign_busy_process()
    try:
        started = time.monotonic()
        conditions = QuietGate(_limits(timeout_s=1.0), sampler=_only(busy.pid)).wait()
        elapsed = time.monotonic() - started
    finally:
        busy.kill()
        busy.wait(10)
    assert conditions.quiet is False
    assert conditions.note is not None and conditions.note.startswith("not quiet after")
    assert conditions.other_cpu_pct is not None and conditions.other_cpu_pct > 5.0
    assert 1.0 <= elapsed < 10.0 and conditions.waited_s >= 1.0
