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

from device_agents.schemas import MAX_CONTEXT, BenchReport, DeviceProperties, storable

API_PREFIX = "/api/v1"
SHA256_HEADER = "X-Artifact-SHA256"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}$"
KEY_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
TOKEN_PATTERN = r"^[0-9a-f]{32}$"
DeviceKind = Literal["android", "x86"]
JobStateName = Literal["queued", "leased", "done", "failed", "cancelled"]
# Ids are INTEGER columns: PostgreSQL's int4 ends here (SQLite's at 2^63 - 1). A larger id in a
# path, query or body cannot name a row, and is refused (422) before it reaches the database.
MAX_ID = 2**31 - 1
MAX_OFFSET = MAX_ID  # a list's offset: past the last possible row
MAX_REASON_CHARS = 4000  # a failure's reason: what went wrong, not a log file


class _In(BaseModel):
    """Requests: unknown fields are refused (a typo must not pass silently), and so are NaN,
    infinities and text the database cannot store (NUL, lone surrogates)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable(value)


class _Out(BaseModel):
    """Responses: unknown fields are ignored, so a newer coordinator can add some."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- devices ---------------------------------------------------------------------------------


class DeviceCreate(_In):
    name: str = Field(pattern=NAME_PATTERN, description="unique device name")
    kind: DeviceKind = Field(description="android (a phone on adb) or x86 (this host)")
    serial: str | None = Field(default=None, min_length=1, max_length=128,
                               description="adb serial of the phone")
    tags: list[str] = Field(default_factory=list, max_length=32,
                            description="labels that device classes match (kind:tag)")

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        import re

        for tag in tags:
            if not re.fullmatch(TAG_PATTERN, tag):
                raise ValueError(f"tag {tag!r} must match {TAG_PATTERN}")
        return sorted(set(tags))


class DevicePublic(_Out):
    """A registered device as the API shows it."""

    id: int = Field(description="device id")
    name: str = Field(description="unique device name")
    kind: str = Field(description="android or x86")
    serial: str | None = Field(default=None, description="adb serial of the phone")
    tags: list[str] = Field(default_factory=list, description="labels device classes match")
    properties: dict[str, Any] = Field(default_factory=dict,
                                       description="what its agent reported (DeviceProperties)")
    status: str = Field(description="online | offline | retired (as last reported)")
    status_reason: str | None = Field(default=None, description="why it is offline")
    online: bool = Field(description="reported online and heard from recently")
    last_seen_at: datetime | None = Field(default=None, description="last call of its agent")
    created_at: datetime | None = Field(default=None, description="registration time")
    retired_at: datetime | None = Field(default=None, description="retirement time")


class DevicesPublic(_Out):
    data: list[DevicePublic] = Field(description="the devices")
    count: int = Field(description="how many are in data")


class DeviceRegistered(_Out):
    """The answer to a registration: the token is shown this once and stored only hashed."""

    device: DevicePublic = Field(description="the new device")
    token: str = Field(description="its agent's bearer token (shown this once)")


# --- agent side ------------------------------------------------------------------------------


class PropertiesUpdate(_In):
    properties: DeviceProperties = Field(description="what the agent reads off its device")


class Heartbeat(_In):
    """Sent every few seconds; while measuring it names the job, which extends its lease."""

    online: bool = Field(default=True, description="false: the agent's device (phone) is gone")
    reason: str | None = Field(default=None, max_length=2000, description="why it is offline")
    job_id: int | None = Field(default=None, gt=0, le=MAX_ID,
                               description="the job being measured (extends its lease)")
    lease_token: str | None = Field(default=None, pattern=TOKEN_PATTERN,
                                    description="that job's lease token")

    @model_validator(mode="after")
    def _job_and_token(self) -> Heartbeat:
        if (self.job_id is None) != (self.lease_token is None):
            raise ValueError("job_id and lease_token go together")
        return self


class HeartbeatAck(_Out):
    server_time: datetime = Field(description="the database clock")
    lease_expires_at: datetime | None = Field(default=None,
                                              description="the named job's new lease expiry")
    # False when the named job is no longer this agent's (requeued, cancelled): stop measuring.
    lease_valid: bool | None = Field(default=None, description=(
        "false: the named job is no longer this agent's (requeued, cancelled): stop measuring"))
    released_jobs: list[int] = Field(default_factory=list,
                                     description="jobs requeued because the device is gone")


class LeaseRequest(_In):
    """An empty body (or none): the device token says who asks."""


class ArtifactRef(_Out):
    """The model file of a job."""

    id: int = Field(description="artifact id")
    sha256: str = Field(description="sha256 of the file: verify the download against it")
    size_bytes: int = Field(description="file size")
    format: str = Field(description="file format (gguf)")
    quant: str = Field(description="quantization (q4_0, f16, ...)")
    url: str = Field(description="relative to the coordinator: GET it with the device token")


class RemeasurePolicy(_Out):
    """When an agent measures a context again before reporting it (the coordinator's flagging
    thresholds, sent with every job so both sides apply the same rule)."""

    noisy_cv: float = Field(default=0.10, ge=0, description="stddev / median above this: noisy")
    hot_celsius: float = Field(default=45.0, description=(
        "any thermal zone above this (degrees C) before or after: hot"))
    max_tries: int = Field(default=3, ge=1, le=20,
                           description="measurements of one context at most")


class JobSpec(_Out):
    """What an agent needs to run one leased job."""

    job_id: int = Field(description="job id")
    lease_token: str = Field(description="send it with heartbeats, the result or a failure")
    lease_expires_at: datetime = Field(description="heartbeat before this or lose the job")
    lease_seconds: float = Field(description="how long each heartbeat extends the lease")
    attempt: int = Field(description="1 for the first lease")
    artifact: ArtifactRef = Field(description="the model file to measure")
    contexts: list[int] = Field(description="context lengths to measure, tokens")
    repetitions: int = Field(description="repetitions of each figure")
    n_gen: int = Field(description="tokens generated for the decode figure")
    # llama.cpp flash attention pinned by the job (None: the agent's own default, off)
    flash_attn: bool | None = Field(default=None, description=(
        "llama.cpp flash attention pinned by the job (null: the agent's default, off)"))
    stage: str | None = Field(default=None, description=(
        "screen | confirm (search jobs), null: made by hand"))
    runtime: str = Field(default="llama.cpp", description=(
        "the runtime to measure with: llama.cpp (llama-bench, a GGUF) or executorch "
        "(star-et-bench, a .pte)"))
    remeasure: RemeasurePolicy = Field(default_factory=RemeasurePolicy,
                                       description="when to measure a context again")


class LeaseResponse(_Out):
    job: JobSpec | None = Field(default=None, description="the leased job, or null: none")
    retry_after_s: float = Field(default=0.0,
                                 description="when no job: wait this long before asking again")


class ResultSubmission(_In):
    """A finished measurement. The agent picks ``idempotency_key`` once (when it spools the
    result) and sends the same key on every retry: the coordinator stores the result once."""

    lease_token: str = Field(pattern=TOKEN_PATTERN, description="the job's lease token")
    idempotency_key: str = Field(pattern=KEY_PATTERN, description=(
        "chosen once by the agent and sent on every retry: the result is stored once"))
    report: BenchReport = Field(description="the measurement")


class ResultAck(_Out):
    job_id: int = Field(description="job id")
    state: str = Field(description="the job's state (done)")
    idempotency_key: str = Field(description="the key of the stored result")
    measurement_ids: list[int] = Field(description="the stored measurements")
    flagged_hot: list[int] = Field(default_factory=list, description="contexts measured hot")
    flagged_noisy: list[int] = Field(default_factory=list,
                                     description="contexts with a high spread")


class JobFailure(_In):
    lease_token: str = Field(pattern=TOKEN_PATTERN, description="the job's lease token")
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS, description="what went wrong")
    device_gone: bool = Field(default=False, description=(
        "the phone disappeared: mark the device offline too"))
    retry: bool = Field(default=True, description=(
        "false: the job itself is broken (e.g. the runtime refuses the file): fail it for good"))


# --- operators: jobs, artifacts, runs, measurements -----------------------------------------


class JobCreate(_In):
    artifact_id: int = Field(gt=0, le=MAX_ID, description="the model file to measure")
    contexts: list[int] = Field(min_length=1, max_length=32,
                                description="distinct context lengths, tokens")
    repetitions: int = Field(default=3, ge=1, le=1000, description="repetitions of each figure")
    n_gen: int = Field(default=32, ge=1, le=4096,
                       description="tokens generated for the decode figure")
    device: str | None = Field(default=None, pattern=NAME_PATTERN,
                               description="one named device, or")
    device_kind: DeviceKind | None = Field(default=None,
                                           description="a device class: kind + device_tags")
    device_tags: list[str] = Field(default_factory=list, max_length=32,
                                   description="tags the device class requires")
    candidate_id: int | None = Field(default=None, gt=0, le=MAX_ID,
                                     description="the candidate the file belongs to")
    max_attempts: int | None = Field(default=None, ge=1, le=100,
                                     description="leases before it fails (null: the server's)")
    priority: int = Field(default=0, ge=-1000, le=1000, description="higher is leased first")
    flash_attn: bool | None = Field(default=None, description=(
        "pin llama.cpp's flash attention (null: the agent's default)"))

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
    """A profile job as the API shows it."""

    id: int = Field(description="job id")
    kind: str = Field(description="job kind (profile)")
    state: JobStateName = Field(description="queued | leased | done | failed | cancelled")
    artifact_id: int = Field(description="the model file to measure")
    candidate_id: int | None = Field(default=None, description="its candidate, if any")
    device_id: int | None = Field(default=None, description="the one device it targets")
    device_kind: str | None = Field(default=None, description="the device class it targets")
    device_tags: list[str] = Field(default_factory=list,
                                   description="tags the device class requires")
    contexts: list[int] = Field(description="context lengths to measure, tokens")
    repetitions: int = Field(description="repetitions of each figure")
    n_gen: int = Field(description="tokens generated for the decode figure")
    priority: int = Field(description="higher is leased first")
    lease_owner_id: int | None = Field(default=None, description="the device holding it")
    lease_expires_at: datetime | None = Field(default=None,
                                              description="when the lease runs out")
    attempts: int = Field(description="failed or expired leases so far")
    max_attempts: int = Field(description="leases before it fails for good")
    last_error: str | None = Field(default=None, description="why the last attempt failed")
    created_at: datetime | None = Field(default=None, description="creation time")
    finished_at: datetime | None = Field(default=None, description="when it was done or failed")
    stage: str | None = Field(default=None,
                              description="screen | confirm (search jobs), null: by hand")
    flash_attn: bool | None = Field(default=None,
                                    description="pinned flash attention (null: agent default)")
    runtime: str = Field(default="llama.cpp", description=(
        "who runs it: llama.cpp (a GGUF) or executorch (a .pte), from the artifact's format"))


class JobsPublic(_Out):
    data: list[JobPublic] = Field(description="the jobs")
    count: int = Field(description="how many are in data")


class ArtifactPublic(_Out):
    """A stored model file."""

    id: int = Field(description="artifact id")
    candidate_id: int | None = Field(default=None, description="its candidate, if any")
    format: str = Field(description="file format (gguf)")
    quant: str = Field(description="quantization (q4_0, f16, ...)")
    sha256: str = Field(description="sha256 of the file")
    size_bytes: int = Field(description="file size")
    created_at: datetime | None = Field(default=None, description="upload time")


class ArtifactsPublic(_Out):
    data: list[ArtifactPublic] = Field(description="the artifacts")
    count: int = Field(description="how many are in data")


class MeasurementPublic(_Out):
    """One context of one job on one device."""

    id: int = Field(description="measurement id")
    job_id: int = Field(description="the job that measured it")
    candidate_id: int | None = Field(default=None, description="the candidate measured")
    artifact_id: int = Field(description="the model file measured")
    device_id: int = Field(description="the device that measured")
    context: int = Field(description="context length, tokens")
    ttft_median_ms: float | None = Field(default=None, description="time to first token, ms")
    ttft_stddev_ms: float | None = Field(default=None, description="its standard deviation")
    decode_median_ms: float | None = Field(default=None, description="ms per generated token")
    decode_stddev_ms: float | None = Field(default=None, description="its standard deviation")
    peak_rss_bytes: int | None = Field(default=None, description="peak RSS of the prefill")
    oom: bool = Field(description="ran out of memory")
    error: str | None = Field(default=None, description="why it could not be measured")
    temp_before_c: float | None = Field(default=None, description="hottest zone before, C")
    temp_after_c: float | None = Field(default=None, description="hottest zone after, C")
    runtime: dict[str, Any] = Field(description="the runtime's settings (RuntimeSettings)")
    flagged_hot: bool = Field(description="measured hotter than coordinator.hot_celsius")
    flagged_noisy: bool = Field(description="spread above coordinator.noisy_cv")
    created_at: datetime | None = Field(default=None, description="when it was stored")
    tries: int = Field(default=1, description="times the agent measured this context before it "
                       "kept this figure (a noisy or hot one is measured again)")
    conditions: dict[str, Any] | None = Field(
        default=None, description="the machine before the run: load, CPU steal, other "
        "processes' CPU, time waited for quiet or cool-down (Conditions)")


class MeasurementsPublic(_Out):
    data: list[MeasurementPublic] = Field(description="the measurements")
    count: int = Field(description="how many are in data")


class RunPublic(_Out):
    """A search run."""

    id: int = Field(description="run id")
    name: str = Field(description="unique run name")
    config: dict[str, Any] = Field(description="the run's configuration as launched")
    seed: int | None = Field(default=None, description="random seed")
    created_at: datetime | None = Field(default=None, description="creation time")
    # a search run's lifecycle: running | suspended (its coordinator shut down; the next one
    # continues it) | stopped | done | failed
    status: str | None = Field(default=None, description=(
        "running | suspended (its coordinator shut down; the next one continues it) | "
        "stopped | done | failed"))
    status_reason: str | None = Field(default=None, description="why it has its status")
    driver: str | None = Field(default=None, description=(
        '"coordinator" (REST) or "cli" (star search run|resume)'))
    heartbeat_at: datetime | None = Field(default=None, description=(
        "the engine's last sign of life (database clock)"))
    stop_requested: bool = Field(default=False,
                                 description="a stop was asked for and not yet honoured")


class RunsPublic(_Out):
    data: list[RunPublic] = Field(description="the runs")
    count: int = Field(description="how many are in data")


class CandidatePublic(_Out):
    """A candidate architecture of a run."""

    id: int = Field(description="candidate id")
    run_id: int = Field(description="its run")
    generation_id: int | None = Field(default=None, description="its generation's row id")
    genome_hash: str = Field(description="sha256 of the genome's canonical JSON")
    genome: dict[str, Any] = Field(description="the genome")
    arch_spec: dict[str, Any] | None = Field(default=None, description="the validated ArchSpec")
    analytic_costs: dict[str, Any] | None = Field(default=None,
                                                  description="params, bytes, FLOPs, ...")
    proxy_metrics: dict[str, Any] | None = Field(default=None,
                                                 description="the proxy's quality metrics")
    created_at: datetime | None = Field(default=None, description="creation time")


class CandidatesPublic(_Out):
    data: list[CandidatePublic] = Field(description="the candidates")
    count: int = Field(description="how many are in data")


class Health(_Out):
    status: str = Field(description="ok")
    schema_revision: str = Field(description="the database's Alembic revision")
    jobs: dict[str, int] = Field(default_factory=dict, description="jobs by state")
