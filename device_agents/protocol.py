"""Wire schemas of the coordinator's REST API, shared by the coordinator, the agents and the CLI.

Pydantic only (and ``device_agents.schemas`` for the measurement report). Families follow the
FastAPI template: ``XCreate`` (operator input), ``XPublic`` (what the API returns),
``XsPublic(data, count)`` (lists). Agent messages: ``LeaseRequest`` -> ``LeaseResponse``
(``JobSpec``), ``Heartbeat`` -> ``HeartbeatAck``, ``ResultSubmission`` -> ``ResultAck``,
``JobFailure`` -> ``JobPublic``. Authentication is ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from device_agents.schemas import BenchReport, DeviceProperties

API_PREFIX = "/api/v1"
SHA256_HEADER = "X-Artifact-SHA256"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}$"
KEY_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
TOKEN_PATTERN = r"^[0-9a-f]{32}$"
DeviceKind = Literal["android", "x86"]
JobStateName = Literal["queued", "leased", "done", "failed", "cancelled"]
MAX_CONTEXT = 1 << 20  # 1M tokens: anything above is a typo, not a benchmark


class _In(BaseModel):
    """Requests: unknown fields are refused (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    """Responses: unknown fields are ignored, so a newer coordinator can add some."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- devices ---------------------------------------------------------------------------------


class DeviceCreate(_In):
    name: str = Field(pattern=NAME_PATTERN)
    kind: DeviceKind
    serial: str | None = Field(default=None, min_length=1, max_length=128)  # adb serial
    tags: list[str] = Field(default_factory=list, max_length=32)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        import re

        for tag in tags:
            if not re.fullmatch(TAG_PATTERN, tag):
                raise ValueError(f"tag {tag!r} must match {TAG_PATTERN}")
        return sorted(set(tags))


class DevicePublic(_Out):
    id: int
    name: str
    kind: str
    serial: str | None = None
    tags: list[str] = Field(default_factory=list)
    properties: dict[str, Any] = Field(default_factory=dict)
    status: str  # online | offline | retired (as last reported)
    status_reason: str | None = None
    online: bool  # reported online and heard from recently
    last_seen_at: datetime | None = None
    created_at: datetime | None = None
    retired_at: datetime | None = None


class DevicesPublic(_Out):
    data: list[DevicePublic]
    count: int


class DeviceRegistered(_Out):
    """The answer to a registration: the token is shown this once and stored only hashed."""

    device: DevicePublic
    token: str


# --- agent side ------------------------------------------------------------------------------


class PropertiesUpdate(_In):
    properties: DeviceProperties


class Heartbeat(_In):
    """Sent every few seconds; while measuring it names the job, which extends its lease."""

    online: bool = True  # false: the agent's device (phone) is gone
    reason: str | None = Field(default=None, max_length=2000)
    job_id: int | None = Field(default=None, gt=0)
    lease_token: str | None = Field(default=None, pattern=TOKEN_PATTERN)

    @model_validator(mode="after")
    def _job_and_token(self) -> Heartbeat:
        if (self.job_id is None) != (self.lease_token is None):
            raise ValueError("job_id and lease_token go together")
        return self


class HeartbeatAck(_Out):
    server_time: datetime
    lease_expires_at: datetime | None = None
    # False when the named job is no longer this agent's (requeued, cancelled): stop measuring.
    lease_valid: bool | None = None
    released_jobs: list[int] = Field(default_factory=list)  # requeued because the device is gone


class LeaseRequest(_In):
    pass


class ArtifactRef(_Out):
    id: int
    sha256: str
    size_bytes: int
    format: str
    quant: str
    url: str  # relative to the coordinator: GET it with the device token


class RemeasurePolicy(_Out):
    """When an agent measures a context again before reporting it (the coordinator's flagging
    thresholds, sent with every job so both sides apply the same rule)."""

    noisy_cv: float = Field(default=0.10, ge=0)  # stddev / median above this: noisy
    hot_celsius: float = 45.0  # any thermal zone above this before or after: hot
    max_tries: int = Field(default=3, ge=1, le=20)  # measurements of one context at most


class JobSpec(_Out):
    """What an agent needs to run one leased job."""

    job_id: int
    lease_token: str
    lease_expires_at: datetime
    lease_seconds: float
    attempt: int  # 1 for the first lease
    artifact: ArtifactRef
    contexts: list[int]
    repetitions: int
    n_gen: int
    # llama.cpp flash attention pinned by the job (None: the agent's own default, off)
    flash_attn: bool | None = None
    stage: str | None = None  # screen | confirm (search jobs), None: made by hand
    remeasure: RemeasurePolicy = Field(default_factory=RemeasurePolicy)


class LeaseResponse(_Out):
    job: JobSpec | None = None
    retry_after_s: float = 0.0  # when no job: wait this long before asking again


class ResultSubmission(_In):
    """A finished measurement. The agent picks ``idempotency_key`` once (when it spools the
    result) and sends the same key on every retry: the coordinator stores the result once."""

    lease_token: str = Field(pattern=TOKEN_PATTERN)
    idempotency_key: str = Field(pattern=KEY_PATTERN)
    report: BenchReport


class ResultAck(_Out):
    job_id: int
    state: str
    idempotency_key: str
    measurement_ids: list[int]
    flagged_hot: list[int] = Field(default_factory=list)  # contexts measured hot
    flagged_noisy: list[int] = Field(default_factory=list)  # contexts with a high spread


class JobFailure(_In):
    lease_token: str = Field(pattern=TOKEN_PATTERN)
    reason: str = Field(min_length=1, max_length=4000)
    device_gone: bool = False  # the phone disappeared: mark the device offline too
    retry: bool = True  # false: the job itself is broken (e.g. the runtime refuses the file)


# --- operators: jobs, artifacts, runs, measurements -----------------------------------------


class JobCreate(_In):
    artifact_id: int = Field(gt=0)
    contexts: list[int] = Field(min_length=1, max_length=32)
    repetitions: int = Field(default=3, ge=1, le=1000)
    n_gen: int = Field(default=32, ge=1, le=4096)
    device: str | None = Field(default=None, pattern=NAME_PATTERN)  # one named device, or
    device_kind: DeviceKind | None = None  # a device class: kind + tags
    device_tags: list[str] = Field(default_factory=list, max_length=32)
    candidate_id: int | None = Field(default=None, gt=0)
    max_attempts: int | None = Field(default=None, ge=1, le=100)  # default: the server's
    priority: int = Field(default=0, ge=-1000, le=1000)
    flash_attn: bool | None = None  # pin llama.cpp's flash attention (None: agent default)

    @field_validator("contexts")
    @classmethod
    def _contexts(cls, contexts: list[int]) -> list[int]:
        for c in contexts:
            if not 0 < c <= MAX_CONTEXT:
                raise ValueError(f"context {c} must be in 1..{MAX_CONTEXT}")
        if len(set(contexts)) != len(contexts):
            raise ValueError("contexts must be distinct")
        return contexts

    @model_validator(mode="after")
    def _target(self) -> JobCreate:
        if self.device is None and self.device_kind is None:
            raise ValueError("name a device or a device_kind")
        return self


class JobPublic(_Out):
    id: int
    kind: str
    state: JobStateName
    artifact_id: int
    candidate_id: int | None = None
    device_id: int | None = None
    device_kind: str | None = None
    device_tags: list[str] = Field(default_factory=list)
    contexts: list[int]
    repetitions: int
    n_gen: int
    priority: int
    lease_owner_id: int | None = None
    lease_expires_at: datetime | None = None
    attempts: int
    max_attempts: int
    last_error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    stage: str | None = None
    flash_attn: bool | None = None


class JobsPublic(_Out):
    data: list[JobPublic]
    count: int


class ArtifactPublic(_Out):
    id: int
    candidate_id: int | None = None
    format: str
    quant: str
    sha256: str
    size_bytes: int
    created_at: datetime | None = None


class ArtifactsPublic(_Out):
    data: list[ArtifactPublic]
    count: int


class MeasurementPublic(_Out):
    id: int
    job_id: int
    candidate_id: int | None = None
    artifact_id: int
    device_id: int
    context: int
    ttft_median_ms: float | None = None
    ttft_stddev_ms: float | None = None
    decode_median_ms: float | None = None
    decode_stddev_ms: float | None = None
    peak_rss_bytes: int | None = None
    oom: bool
    error: str | None = None
    temp_before_c: float | None = None
    temp_after_c: float | None = None
    runtime: dict[str, Any]
    flagged_hot: bool
    flagged_noisy: bool
    created_at: datetime | None = None


class MeasurementsPublic(_Out):
    data: list[MeasurementPublic]
    count: int


class RunPublic(_Out):
    id: int
    name: str
    config: dict[str, Any]
    seed: int | None = None
    created_at: datetime | None = None
    # a search run's lifecycle: running | suspended (its coordinator shut down; the next one
    # continues it) | stopped | done | failed
    status: str | None = None
    status_reason: str | None = None
    driver: str | None = None  # "coordinator" (REST) or "cli" (star search run|resume)
    heartbeat_at: datetime | None = None  # the engine's last sign of life (database clock)
    stop_requested: bool = False


class RunsPublic(_Out):
    data: list[RunPublic]
    count: int


class CandidatePublic(_Out):
    id: int
    run_id: int
    generation_id: int | None = None
    genome_hash: str
    genome: dict[str, Any]
    arch_spec: dict[str, Any] | None = None
    analytic_costs: dict[str, Any] | None = None
    proxy_metrics: dict[str, Any] | None = None
    created_at: datetime | None = None


class CandidatesPublic(_Out):
    data: list[CandidatePublic]
    count: int


class Health(_Out):
    status: str
    schema_revision: str
    jobs: dict[str, int] = Field(default_factory=dict)
