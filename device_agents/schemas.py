"""Wire schemas for measurements, shared by ``star bench``, the device agents and the coordinator.

This module imports only pydantic: it is loaded on lab hosts that have neither torch nor a
database. Validation here is the first line of "bad input loses nothing": a physically impossible
figure (negative, NaN, infinite) is refused with the field named, before it reaches storage.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# --- limits: what a real device can never exceed ----------------------------------------------
# A figure outside these is a bug in an agent (or a forged request), never a measurement, and it
# is refused with the field named (422) rather than stored. Each bound is far above any real
# device so that no genuine report is ever refused.

# One day in milliseconds. The slowest real figure (a 1M-token prefill on a phone CPU) takes
# hours; llama-bench's own repetitions of a figure run inside one job lease.
MAX_MS = 24 * 3600 * 1000.0
# Samples of one figure. A job asks for at most 1000 repetitions (JobCreate); a figure keeps
# one sample per repetition.
MAX_SAMPLES = 10_000
# 1 PiB. The largest machines hold tens of TiB of memory; phones hold tens of GiB.
MAX_BYTES = 1 << 50
# Threads (and CPU cores): llama.cpp caps its thread pool at 512; the largest machines have a few
# thousand hardware threads.
MAX_THREADS = 4096
# Tokens of context: anything above 1M tokens is a typo, not a benchmark.
MAX_CONTEXT = 1 << 20
# Contexts in one report (a job asks for at most 32).
MAX_CONTEXTS = 256
# Degrees Celsius a thermal zone may report. Absolute zero is -273.15 C, but a laptop's wifi
# sensor reads -274 C while the radio is off, and refusing that would refuse the whole report;
# silicon and solder are long gone at 1000 C.
MIN_CELSIUS = -300.0
MAX_CELSIUS = 1000.0
MAX_ZONES = 512  # thermal zones in one reading (phones expose about 100)
MAX_ERROR_CHARS = 4000  # an error message: what went wrong, not a log file
MAX_NAME_CHARS = 256  # a free-text name (CPU model, thermal zone, build flag, OS version)
MAX_FLAGS = 256  # build flags of the runtime


def storable(value: Any) -> Any:
    """Refuse text the database cannot store: NUL characters (PostgreSQL refuses them) and
    lone UTF-16 surrogates (they cannot be encoded as UTF-8). Walks lists and dicts (keys too);
    nested models check their own fields."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode (a lone surrogate was sent)") from None
    elif isinstance(value, list | tuple):
        for item in value:
            storable(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item)
    return value


class _Strict(BaseModel):
    """Unknown fields, NaN and infinities are refused; so is text the database cannot store."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable(value)


class Stat(_Strict):
    """One figure over repetitions: median, spread and the raw samples (same unit)."""

    median: float = Field(ge=0, le=MAX_MS, description="median of the samples")
    stddev: float = Field(ge=0, le=MAX_MS, description="standard deviation of the samples")
    samples: list[float] = Field(
        min_length=1, max_length=MAX_SAMPLES, description="one value per repetition"
    )

    @field_validator("median", "stddev")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("samples")
    @classmethod
    def _finite_samples(cls, values: list[float]) -> list[float]:
        for value in values:
            if not math.isfinite(value) or not 0 <= value <= MAX_MS:
                raise ValueError(f"every sample must be finite and in 0..{MAX_MS:.0f}")
        return values

    @property
    def cv(self) -> float:
        """Coefficient of variation (stddev / median); 0 when the median is 0."""
        return self.stddev / self.median if self.median > 0 else 0.0


class Thermal(_Strict):
    """Device temperatures in degrees Celsius by zone name, read before or after a run."""

    zones: dict[str, float] = Field(
        default_factory=dict, max_length=MAX_ZONES,
        description=f"degrees Celsius by zone name ({MIN_CELSIUS:.0f}..{MAX_CELSIUS:.0f})",
    )
    status: int | None = Field(
        default=None, ge=0, le=6,
        description="Android thermalservice status (0 none .. 6 shutdown), if known",
    )

    @field_validator("zones")
    @classmethod
    def _plausible(cls, zones: dict[str, float]) -> dict[str, float]:
        for name, celsius in zones.items():
            if not 0 < len(name) <= MAX_NAME_CHARS:
                raise ValueError(f"zone names are 1..{MAX_NAME_CHARS} characters")
            if not MIN_CELSIUS <= celsius <= MAX_CELSIUS:
                raise ValueError(f"zone {name[:64]!r}: {celsius} C is outside "
                                 f"{MIN_CELSIUS:.0f}..{MAX_CELSIUS:.0f} C")
        return zones

    @property
    def max_c(self) -> float | None:
        return max(self.zones.values()) if self.zones else None


class Conditions(_Strict):
    """The machine's state just before a measurement: what the agent waited for and saw.

    A shared machine measures its neighbours, not the model (decode figures of one model were
    seen spread 0.7-313 ms/token under load), so an agent waits for quiet before measuring and
    says what it found. Fields a device cannot read are None.
    """

    load_1m: float | None = Field(default=None, ge=0, le=1e6,
                                  description="1-minute load average")
    cpu_steal_pct: float | None = Field(default=None, ge=0, le=100,
                                        description="CPU time stolen by the hypervisor, %")
    other_cpu_pct: float | None = Field(default=None, ge=0, le=1e5,
                                        description="other processes' CPU use, % of one core")
    waited_s: float = Field(default=0.0, ge=0, le=1e7,
                            description="seconds spent waiting for quiet")
    quiet: bool = Field(default=True, description="false: the wait timed out and the run "
                                                  "went ahead anyway")
    note: str | None = Field(default=None, max_length=500,
                             description="what the agent saw, in words")


class ContextMeasurement(_Strict):
    """Everything measured at one context length C, in one process (so peak RSS is attributable).

    ttft_ms: time to prefill C prompt tokens and produce the first token.
    decode_ms_per_token: mean ms per generated token with C tokens already in context.
    peak_rss_bytes: high-water mark of the benchmark process; None when ``oom`` is true.
    """

    context: int = Field(gt=0, le=MAX_CONTEXT, description="context length C in tokens")
    ttft_ms: Stat | None = Field(
        default=None, description="time to first token at C prompt tokens, ms")
    decode_ms_per_token: Stat | None = Field(
        default=None, description="ms per generated token with C tokens in context")
    peak_rss_bytes: int | None = Field(
        default=None, gt=0, le=MAX_BYTES,
        description="high-water mark (VmHWM) of the prefill process; null when oom")
    oom: bool = Field(default=False, description="the run ran out of memory")
    error: str | None = Field(default=None, max_length=MAX_ERROR_CHARS,
                              description="why the context could not be measured")
    thermal_before: Thermal | None = Field(default=None,
                                           description="temperatures just before the run")
    thermal_after: Thermal | None = Field(default=None,
                                          description="temperatures just after the run")
    # how many times this context was measured before this figure was kept (a noisy or hot
    # figure is re-measured, bounded by the job's ``RemeasurePolicy``)
    tries: int = Field(default=1, ge=1, le=100, description=(
        "times this context was measured before this figure was kept (hot or noisy figures "
        "are measured again)"))
    conditions: Conditions | None = Field(default=None,
                                          description="the machine's state before the run")

    @model_validator(mode="after")
    def _complete(self) -> ContextMeasurement:
        if not self.oom and self.error is None:
            missing = [
                name
                for name in ("ttft_ms", "decode_ms_per_token", "peak_rss_bytes")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"a successful measurement needs {', '.join(missing)} "
                    "(set oom or error otherwise)"
                )
        return self


RuntimeName = Literal["llama.cpp", "executorch"]


class RuntimeSettings(_Strict):
    """Settings that change the figures and are therefore recorded with every measurement."""

    llama_cpp_commit: str = Field(default="", max_length=MAX_NAME_CHARS, description=(
        'the llama.cpp build that measured; "" for other runtimes'))
    build_flags: list[str] = Field(default_factory=list, max_length=MAX_FLAGS,
                                   description="the runtime's build flags")
    threads: int = Field(gt=0, le=MAX_THREADS, description="threads the runtime used")
    # a hex CPU mask: 4096 CPUs take 1024 hex digits
    cpu_mask: str | None = Field(default=None, max_length=2048,
                                 description="CPU affinity mask (llama-bench -C), if pinned")
    flash_attn: bool = Field(description="flash attention on")
    cache_type_k: str = Field(default="f16", max_length=32, description="KV cache type of K")
    cache_type_v: str = Field(default="f16", max_length=32, description="KV cache type of V")
    n_gen: int = Field(gt=0, le=MAX_CONTEXT,
                       description="tokens generated for the decode figure")
    repetitions: int = Field(gt=0, le=MAX_SAMPLES, description="repetitions of each figure")
    cpu_model: str = Field(default="", max_length=MAX_NAME_CHARS, description="CPU model name")
    # Model loading: False = weights read into anonymous memory (RSS counts all of them),
    # True = memory-mapped (RSS counts only the pages touched). None: not recorded (older reports).
    mmap: bool | None = Field(default=None, description=(
        "model loading: false = read into memory (RSS counts every weight), true = mapped "
        "(RSS counts the pages touched), null = not recorded"))
    warmup_below: int | None = Field(default=None, ge=1, le=1 << 20, description=(
        "from this context on the TTFT run skipped llama-bench's untimed warm-up prefill; "
        "null: always warmed up (or not recorded)"))

    # Which runtime measured: "llama.cpp" (a GGUF) or "executorch" (a .pte). Older reports,
    # which predate the field, were all llama.cpp.
    runtime: RuntimeName = Field(default="llama.cpp", description=(
        "the runtime that measured: llama.cpp (a GGUF) or executorch (a .pte)"))
    runtime_version: str | None = Field(default=None, max_length=MAX_NAME_CHARS, description=(
        'the runtime\'s version when it is not a llama.cpp commit, e.g. ExecuTorch "1.5.1+cpu"'))
    delegate: str | None = Field(default=None, max_length=64, description=(
        "the ExecuTorch backend the program was lowered to (xnnpack); null for llama.cpp"))

    @field_validator("build_flags")
    @classmethod
    def _short_flags(cls, flags: list[str]) -> list[str]:
        for flag in flags:
            if len(flag) > MAX_NAME_CHARS:
                raise ValueError(f"each build flag is at most {MAX_NAME_CHARS} characters")
        return flags


class BenchReport(_Strict):
    """One model on one device: a measurement per requested context."""

    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$",
                              description="sha256 of the model file measured")
    model_bytes: int = Field(gt=0, le=MAX_BYTES, description="size of the model file")
    runtime: RuntimeSettings = Field(description="how the runtime ran (recorded with "
                                                 "every measurement)")
    contexts: list[ContextMeasurement] = Field(
        min_length=1, max_length=MAX_CONTEXTS, description="one measurement per context")

    @model_validator(mode="after")
    def _distinct_contexts(self) -> BenchReport:
        seen = [c.context for c in self.contexts]
        if len(seen) != len(set(seen)):
            raise ValueError("contexts: each context may appear only once")
        return self


class DeviceProperties(_Strict):
    """What an agent reports about its device; read from getprop and /proc on Android."""

    kind: str = Field(pattern=r"^(android|x86)$", description="android or x86")
    model: str = Field(default="", max_length=MAX_NAME_CHARS, description="device model")
    soc: str = Field(default="", max_length=MAX_NAME_CHARS, description=(
        "ro.soc.model / ro.board.platform on Android, CPU model name on x86"))
    abi: str = Field(default="", max_length=MAX_NAME_CHARS, description=(
        "ro.product.cpu.abi on Android, platform.machine() on x86"))
    ram_bytes: int | None = Field(default=None, gt=0, le=MAX_BYTES,
                                  description="physical memory")
    os: str = Field(default="", max_length=MAX_NAME_CHARS,
                    description='e.g. "Android 14 (SDK 34)", "Linux 6.1"')
    cpu: str = Field(default="", max_length=MAX_NAME_CHARS, description="CPU description")
    cpu_cores: int | None = Field(default=None, gt=0, le=MAX_THREADS,
                                  description="CPU cores")
    runtimes: list[RuntimeName] = Field(
        default_factory=lambda: list[RuntimeName](["llama.cpp"]), max_length=2, description=(
            "runtimes this agent can measure with (llama.cpp: GGUF jobs; executorch: .pte "
            "jobs); the coordinator leases it only jobs of these"))
