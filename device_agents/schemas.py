"""Wire schemas for measurements, shared by ``star bench``, the device agents and the coordinator.

This module imports only pydantic: it is loaded on lab hosts that have neither torch nor a
database. Validation here is the first line of "bad input loses nothing": a physically impossible
figure (negative, NaN, infinite) is refused with the field named, before it reaches storage.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stat(_Strict):
    """One figure over repetitions: median, spread and the raw samples (same unit)."""

    median: float = Field(ge=0)
    stddev: float = Field(ge=0)
    samples: list[float] = Field(min_length=1)

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
            if not math.isfinite(value) or value < 0:
                raise ValueError("every sample must be finite and >= 0")
        return values

    @property
    def cv(self) -> float:
        """Coefficient of variation (stddev / median); 0 when the median is 0."""
        return self.stddev / self.median if self.median > 0 else 0.0


class Thermal(_Strict):
    """Device temperatures in degrees Celsius by zone name, read before or after a run."""

    zones: dict[str, float] = Field(default_factory=dict)
    status: int | None = None  # Android thermalservice status (0 none .. 6 shutdown), if known

    @property
    def max_c(self) -> float | None:
        return max(self.zones.values()) if self.zones else None


class Conditions(_Strict):
    """The machine's state just before a measurement: what the agent waited for and saw.

    A shared machine measures its neighbours, not the model (decode figures of one model were
    seen spread 0.7-313 ms/token under load), so an agent waits for quiet before measuring and
    says what it found. Fields a device cannot read are None.
    """

    load_1m: float | None = Field(default=None, ge=0, le=1e6)  # 1-minute load average
    cpu_steal_pct: float | None = Field(default=None, ge=0, le=100)  # hypervisor steal
    other_cpu_pct: float | None = Field(default=None, ge=0, le=1e5)  # other processes' CPU
    waited_s: float = Field(default=0.0, ge=0, le=1e7)  # time spent waiting for quiet
    quiet: bool = True  # False: the wait timed out and the run went ahead anyway
    note: str | None = Field(default=None, max_length=500)


class ContextMeasurement(_Strict):
    """Everything measured at one context length C, in one process (so peak RSS is attributable).

    ttft_ms: time to prefill C prompt tokens and produce the first token.
    decode_ms_per_token: mean ms per generated token with C tokens already in context.
    peak_rss_bytes: high-water mark of the benchmark process; None when ``oom`` is true.
    """

    context: int = Field(gt=0)
    ttft_ms: Stat | None = None
    decode_ms_per_token: Stat | None = None
    peak_rss_bytes: int | None = Field(default=None, gt=0)
    oom: bool = False
    error: str | None = None
    thermal_before: Thermal | None = None
    thermal_after: Thermal | None = None
    # how many times this context was measured before this figure was kept (a noisy or hot
    # figure is re-measured, bounded by the job's ``RemeasurePolicy``)
    tries: int = Field(default=1, ge=1, le=100)
    conditions: Conditions | None = None

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


class RuntimeSettings(_Strict):
    """Settings that change the figures and are therefore recorded with every measurement."""

    llama_cpp_commit: str = ""  # the llama.cpp build's commit; "" for other runtimes
    build_flags: list[str] = Field(default_factory=list)
    threads: int = Field(gt=0)
    cpu_mask: str | None = None
    flash_attn: bool
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    n_gen: int = Field(gt=0)  # tokens generated for the decode figure
    repetitions: int = Field(gt=0)
    cpu_model: str = ""
    # Model loading: False = weights read into anonymous memory (RSS counts all of them),
    # True = memory-mapped (RSS counts only the pages touched). None: not recorded (older reports).
    mmap: bool | None = None
    # Which runtime measured: "llama.cpp" (a GGUF) or "executorch" (a .pte). Older reports,
    # which predate the field, were all llama.cpp.
    runtime: str = "llama.cpp"
    runtime_version: str | None = None  # e.g. ExecuTorch "1.5.1+cpu (3b6068392324)"
    delegate: str | None = None  # ExecuTorch backend the program was lowered to ("xnnpack")


class BenchReport(_Strict):
    """One model on one device: a measurement per requested context."""

    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    model_bytes: int = Field(gt=0)
    runtime: RuntimeSettings
    contexts: list[ContextMeasurement] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct_contexts(self) -> BenchReport:
        seen = [c.context for c in self.contexts]
        if len(seen) != len(set(seen)):
            raise ValueError("contexts: each context may appear only once")
        return self


class DeviceProperties(_Strict):
    """What an agent reports about its device; read from getprop and /proc on Android."""

    kind: str = Field(pattern=r"^(android|x86)$")
    model: str = ""
    soc: str = ""  # ro.soc.model / ro.board.platform on Android, CPU model name on x86
    abi: str = ""  # ro.product.cpu.abi on Android, platform.machine() on x86
    ram_bytes: int | None = Field(default=None, gt=0)
    os: str = ""  # "Android 14 (SDK 34)", "Linux 6.1"
    cpu: str = ""
    cpu_cores: int | None = Field(default=None, gt=0)
