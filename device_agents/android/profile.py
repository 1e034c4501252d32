"""Per-phone settings that keep measurements comparable: thread pinning and the thermal gate.

Without root the CPU governor cannot be fixed, so the agent (a) pins llama-bench's threads to the
big cores (``-C <mask>`` and ``-t <n>``) and (b) waits for the phone to cool below a temperature
before each benchmark process. A profile is plain data (lab_config.yaml can hold one per device
class); ``detect_big_cores`` proposes the pinning for a phone that has none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from device_agents.android.transport import Transport
from device_agents.llamacpp.commands import BenchSettings

CPUFREQ_COMMAND = (
    "for c in /sys/devices/system/cpu/cpu[0-9]*; do "
    'echo "${c##*/cpu} $(cat "$c/cpufreq/cpuinfo_max_freq" 2>/dev/null)"; done'
)


class CachePolicy(StrEnum):
    """What stays under the phone's remote root after a job.

    NONE: nothing (the root is left empty). RUNTIME (default): the llama.cpp binaries in bin/,
    reused by every job and re-pushed only when their sha256 changes; models (hundreds of MB,
    one per candidate) and job directories are removed. ALL: binaries and models (re-measuring
    the same model skips the push); job directories are still removed.
    """

    NONE = "none"
    RUNTIME = "runtime"
    ALL = "all"


class DeviceProfile(BaseModel):
    """How to run on one phone (or device class). Times in seconds, temperatures in C."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int | None = Field(default=None, gt=0)  # None: number of big cores detected
    cpu_mask: str | None = None  # hex mask for llama-bench -C; None with detect: big cores
    detect_big_cores: bool = True  # fill threads / cpu_mask from cpufreq when not given
    cool_down_below_c: float = 42.0
    cool_down_timeout_s: float = Field(default=600.0, ge=0)
    cool_down_poll_s: float = Field(default=5.0, gt=0)
    thermal_zone_pattern: str | None = None  # regex over zone keys for the gate; None = all
    poll_interval_s: float = Field(default=0.5, gt=0)  # detached-run status polls
    call_timeout_s: float = Field(default=30.0, gt=0)  # every short shell call
    push_min_bytes_per_s: float = Field(default=5e6, gt=0)  # push timeout = 30 s + size / this
    remote_root: str = "/data/local/tmp/star"
    cache_policy: CachePolicy = CachePolicy.RUNTIME

    @field_validator("cpu_mask")
    @classmethod
    def _hex_mask(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"0x[0-9a-fA-F]+", value):
            raise ValueError("cpu_mask must be a hex mask such as 0xf0")
        return value

    @field_validator("remote_root")
    @classmethod
    def _safe_root(cls, value: str) -> str:
        # the agent runs `rm -rf` below this root: refuse anything that is not a private subdir
        parts = value.split("/")
        if (
            not re.fullmatch(r"/data/local/tmp/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", value)
            or any(part in (".", "..") for part in parts)
        ):
            raise ValueError("remote_root must be a directory below /data/local/tmp")
        return value

    def settings_for(self, settings: BenchSettings, pinning: Pinning) -> BenchSettings:
        """The job's settings with this phone's threads and CPU mask."""
        return replace(settings, threads=pinning.threads, cpu_mask=pinning.cpu_mask)


@dataclass(frozen=True)
class Pinning:
    threads: int
    cpu_mask: str | None
    source: str  # "profile", "cpufreq" or "all cores"


def parse_cpufreq(text: str) -> dict[int, int | None]:
    """Lines ``<cpu> <max kHz or empty>`` -> {cpu: max kHz or None}."""
    cores: dict[int, int | None] = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit():
            cores[int(parts[0])] = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return cores


def big_cores(max_khz: dict[int, int | None]) -> list[int]:
    """Every core faster than the slowest cluster (all cores if there is one cluster or the
    frequencies are unknown). On a 1+3+4 (prime + big + little) phone this is the 4 fast cores."""
    known = {cpu: khz for cpu, khz in max_khz.items() if khz}
    if not known or len(known) < len(max_khz):
        return sorted(max_khz)
    slowest = min(known.values())
    fast = sorted(cpu for cpu, khz in known.items() if khz > slowest)
    return fast or sorted(known)


def cpu_mask(cores: list[int]) -> str:
    return hex(sum(1 << cpu for cpu in cores))


def resolve_pinning(profile: DeviceProfile, transport: Transport) -> Pinning:
    """Threads and CPU mask for this phone: the profile's, else detected from cpufreq."""
    if profile.threads is not None and (
        profile.cpu_mask is not None or not profile.detect_big_cores
    ):
        return Pinning(profile.threads, profile.cpu_mask, "profile")
    text = transport.shell(CPUFREQ_COMMAND, timeout_s=profile.call_timeout_s).stdout
    cores = parse_cpufreq(text)
    if not cores:
        return Pinning(profile.threads or 1, profile.cpu_mask, "profile")
    if profile.detect_big_cores:
        fast = big_cores(cores)
        if len(fast) < len(cores):
            return Pinning(profile.threads or len(fast), profile.cpu_mask or cpu_mask(fast),
                           "cpufreq")
    return Pinning(profile.threads or len(cores), profile.cpu_mask, "all cores")
