"""Wait for a quiet machine before measuring on it (x86 hosts: lab laptops, shared servers).

A benchmark on a busy machine measures its neighbours: decode figures of one model were seen
spread 0.7-313 ms/token on a loaded 2-core host. So before each try the x86 agent samples, over a
short window,

- the 1-minute load average (``os.getloadavg``),
- CPU steal: the share of time the hypervisor gave this VM's CPUs to someone else (the ``steal``
  column of ``/proc/stat``, over the window),
- other processes' CPU: the CPU time every process *not* started by this agent used during the
  window (psutil), in percent of one core (100 = one core fully busy, as ``top`` counts),

and waits until each is at or below its threshold, or until a timeout, after which it measures
anyway and says so (``Conditions.quiet = False``). Thresholds of None are not checked.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped]

from device_agents.schemas import Conditions

ProcessFilter = Callable[[psutil.Process], bool]


@dataclass(frozen=True)
class QuietThresholds:
    """When a host counts as quiet. Defaults suit a 2-core laptop with a desktop session."""

    max_load_1m: float | None = 1.0  # ~half of 2 cores busy, averaged over the last minute
    max_steal_pct: float | None = 5.0  # of all CPU time in the window
    max_other_cpu_pct: float | None = 25.0  # a quarter of one core, summed over processes
    timeout_s: float = 120.0  # then measure anyway, flagged not quiet
    sample_s: float = 1.0  # one sample's window


@dataclass(frozen=True)
class HostSample:
    load_1m: float
    steal_pct: float | None  # None: /proc/stat unreadable
    other_cpu_pct: float
    at: float  # time.monotonic() at the end of the window


def _proc_stat_cpu() -> tuple[float, float] | None:
    """(steal ticks, total ticks) of the aggregate ``cpu`` line of /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [float(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    while len(values) < 8:
        values.append(0.0)
    return values[7], sum(values)


class HostSampler:
    """Samples the host. ``own`` (default: this process and its descendants) is not "other";
    ``include``, if given, restricts "other processes" to those it accepts (e.g. one user's)."""

    def __init__(self, *, include: ProcessFilter | None = None) -> None:
        self.include = include
        self._me = psutil.Process()

    def _own_pids(self) -> set[int]:
        pids = {self._me.pid}
        try:
            pids.update(p.pid for p in self._me.children(recursive=True))
        except psutil.Error:
            pass
        return pids

    def _cpu_seconds(self) -> dict[tuple[int, float], float]:
        """CPU seconds so far of every other process, keyed by (pid, start time)."""
        own = self._own_pids()
        found: dict[tuple[int, float], float] = {}
        for proc in psutil.process_iter(["create_time"]):
            if proc.pid in own:
                continue
            try:
                if self.include is not None and not self.include(proc):
                    continue
                times = proc.cpu_times()
                found[(proc.pid, proc.info["create_time"] or 0.0)] = times.user + times.system
            except psutil.Error:
                continue
        return found

    def sample(self, window_s: float, stop: threading.Event | None = None) -> HostSample:
        """Measure over ``window_s`` seconds (shorter if ``stop`` is set meanwhile)."""
        stat0, cpu0, t0 = _proc_stat_cpu(), self._cpu_seconds(), time.monotonic()
        (stop or threading.Event()).wait(window_s)
        stat1, cpu1, t1 = _proc_stat_cpu(), self._cpu_seconds(), time.monotonic()
        elapsed = max(t1 - t0, 1e-3)
        # a process born during the window counts from zero; one that died is not seen again
        used = sum(max(0.0, seconds - cpu0.get(key, 0.0)) for key, seconds in cpu1.items())
        steal = None
        if stat0 is not None and stat1 is not None and stat1[1] > stat0[1]:
            steal = 100.0 * (stat1[0] - stat0[0]) / (stat1[1] - stat0[1])
        return HostSample(load_1m=os.getloadavg()[0], steal_pct=steal,
                          other_cpu_pct=100.0 * used / elapsed, at=t1)  # fmt: skip


def too_busy(sample: HostSample, limits: QuietThresholds) -> list[str]:
    """What is above its threshold in ``sample`` (empty: quiet)."""
    busy = []
    if limits.max_load_1m is not None and sample.load_1m > limits.max_load_1m:
        busy.append(f"load {sample.load_1m:.2f} > {limits.max_load_1m:g}")
    if (limits.max_steal_pct is not None and sample.steal_pct is not None
            and sample.steal_pct > limits.max_steal_pct):  # fmt: skip
        busy.append(f"steal {sample.steal_pct:.1f}% > {limits.max_steal_pct:g}%")
    if limits.max_other_cpu_pct is not None and sample.other_cpu_pct > limits.max_other_cpu_pct:
        busy.append(f"other processes {sample.other_cpu_pct:.0f}% > {limits.max_other_cpu_pct:g}%")
    return busy


class QuietGate:
    """``wait()``: sample until quiet or ``timeout_s``; returns the ``Conditions`` to record."""

    def __init__(
        self,
        limits: QuietThresholds,
        *,
        sampler: HostSampler | None = None,
        stop: threading.Event | None = None,
        on_sample: Callable[[HostSample, list[str]], None] | None = None,
    ) -> None:
        self.limits = limits
        self.sampler = sampler or HostSampler()
        self.stop = stop
        self.on_sample = on_sample

    def wait(self) -> Conditions:
        started = time.monotonic()
        deadline = started + self.limits.timeout_s
        while True:
            sample = self.sampler.sample(self.limits.sample_s, self.stop)
            busy = too_busy(sample, self.limits)
            if self.on_sample is not None:
                self.on_sample(sample, busy)
            waited = time.monotonic() - started
            stopped = self.stop is not None and self.stop.is_set()
            if not busy or sample.at >= deadline or stopped:
                note = None
                if busy:
                    why = "stopping" if stopped else f"not quiet after {waited:.0f} s"
                    note = f"{why}: {'; '.join(busy)}"
                elif waited > self.limits.sample_s * 1.5:
                    note = f"waited {waited:.0f} s for a quiet machine"
                return Conditions(
                    load_1m=round(sample.load_1m, 3),
                    cpu_steal_pct=None if sample.steal_pct is None
                    else round(min(100.0, max(0.0, sample.steal_pct)), 2),
                    other_cpu_pct=round(sample.other_cpu_pct, 1),
                    waited_s=round(waited, 2),
                    quiet=not busy,
                    note=note,
                )
