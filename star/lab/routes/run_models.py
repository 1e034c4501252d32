"""Response schemas of the runs routes (``star.lab.routes.runs``): a candidate with its
measurements and artifacts, and a run's frontier."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from device_agents.protocol import CandidatePublic


class MeasurementDetail(BaseModel):
    """A measurement with its samples, thermal readings and device."""

    id: int = Field(description="measurement id")
    job_id: int = Field(description="the job that measured it")
    artifact_id: int = Field(description="the model file measured")
    device_id: int = Field(description="the device that measured")
    device_name: str = Field(description="its name")
    device_kind: str = Field(description="its kind (android, x86)")
    device_tags: list[str] = Field(description="its tags")
    context: int = Field(description="context length, tokens")
    ttft_median_ms: float | None = Field(default=None, description="time to first token, ms")
    ttft_stddev_ms: float | None = Field(default=None, description="its standard deviation")
    ttft_samples_ms: list[float] | None = Field(default=None, description="its samples")
    decode_median_ms: float | None = Field(default=None, description="ms per generated token")
    decode_stddev_ms: float | None = Field(default=None, description="its standard deviation")
    decode_samples_ms: list[float] | None = Field(default=None, description="its samples")
    peak_rss_bytes: int | None = Field(default=None, description="peak RSS of the prefill")
    oom: bool = Field(description="ran out of memory")
    error: str | None = Field(default=None, description="why it could not be measured")
    temp_before_c: float | None = Field(default=None, description="hottest zone before, C")
    temp_after_c: float | None = Field(default=None, description="hottest zone after, C")
    thermal: dict[str, Any] | None = Field(default=None,
                                           description="every zone, before and after")
    runtime: dict[str, Any] = Field(description="the runtime's settings")
    flagged_hot: bool = Field(description="measured hotter than coordinator.hot_celsius")
    flagged_noisy: bool = Field(description="spread above coordinator.noisy_cv")
    created_at: datetime | None = Field(default=None, description="when it was stored")


class ArtifactLink(BaseModel):
    """A candidate's file and where to download it."""

    id: int = Field(description="artifact id")
    sha256: str = Field(description="sha256 of the file")
    size_bytes: int = Field(description="file size")
    format: str = Field(description="file format (gguf)")
    quant: str = Field(description="quantization")
    url: str = Field(description="download: GET this with the admin (or a device) token")


class CandidateDetail(CandidatePublic):
    """A candidate with its artifacts and every measurement."""

    generation: int | None = Field(default=None, description="its generation's index")
    arch: str | None = Field(default=None,
                             description="the llama.cpp architecture it exports to")
    artifacts: list[ArtifactLink] = Field(description="its files")
    measurements: list[MeasurementDetail] = Field(description="its measurements")


class FrontierPointPublic(BaseModel):
    """One candidate's objective values."""

    candidate_id: int = Field(description="candidate id")
    genome_id: str = Field(description="sha256 of its genome")
    generation: int | None = Field(default=None, description="its generation's index")
    arch: str | None = Field(default=None, description="its llama.cpp architecture")
    values: dict[str, float | str | None] = Field(
        description='objective -> value; "inf": OOM; null: missing')
    feasible: bool = Field(description="within every budget")
    reason: str | None = Field(default=None, description="why it is not feasible")
    on_front: bool = Field(description="non-dominated among the feasible")
    url: str = Field(description="the candidate's details")


class FrontierPublic(BaseModel):
    """A run's Pareto frontier, computed from its stored rows."""

    run_id: int = Field(description="run id")
    run: str = Field(description="run name")
    status: str | None = Field(default=None, description="the run's status")
    device: str | None = Field(default=None, description="the device (class) the values are for")
    objectives: list[str] = Field(description=(
        "every objective of the run (retargeted to device if a class)"))
    selected: list[str] = Field(description="those the front was computed over")
    budgets: list[dict[str, Any]] = Field(description="the run's budgets (constraints)")
    data: list[FrontierPointPublic] = Field(description="every candidate")
    count: int = Field(description="how many are in data")
    front: int = Field(description="how many are on the front")
