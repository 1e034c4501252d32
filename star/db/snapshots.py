"""Frozen snapshots: what leaves ``star.db``. Never a live ORM row (cf. Optuna's FrozenTrial).

Times are timezone-aware UTC here (the tables hold naive UTC from the database clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from star.db import models as m
from star.db.models import DeviceStatus, JobState


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


@dataclass(frozen=True)
class DeviceSnapshot:
    id: int
    name: str
    kind: str
    serial: str | None
    tags: tuple[str, ...]
    properties: dict[str, Any]
    status: DeviceStatus
    status_reason: str | None
    created_at: datetime | None
    last_seen_at: datetime | None
    retired_at: datetime | None

    @classmethod
    def of(cls, row: m.Device) -> DeviceSnapshot:
        return cls(
            id=row.id,
            name=row.name,
            kind=row.kind,
            serial=row.serial,
            tags=tuple(row.tags or ()),
            properties=dict(row.properties or {}),
            status=row.status,
            status_reason=row.status_reason,
            created_at=_utc(row.created_at),
            last_seen_at=_utc(row.last_seen_at),
            retired_at=_utc(row.retired_at),
        )

    def is_online(self, now: datetime, offline_after_s: float) -> bool:
        """Online: its agent said so and was heard from within ``offline_after_s``."""
        if self.status is not DeviceStatus.ONLINE or self.last_seen_at is None:
            return False
        return now - self.last_seen_at <= timedelta(seconds=offline_after_s)


@dataclass(frozen=True)
class RunSnapshot:
    id: int
    name: str
    config: dict[str, Any]
    seed: int | None
    created_at: datetime | None
    status: m.RunStatus | None = None
    status_reason: str | None = None
    owner: str | None = None
    driver: str | None = None
    heartbeat_at: datetime | None = None
    stop_requested: bool = False

    @classmethod
    def of(cls, row: m.Run) -> RunSnapshot:
        return cls(row.id, row.name, dict(row.config or {}), row.seed, _utc(row.created_at),
                   status=m.RunStatus(row.status) if row.status else None,
                   status_reason=row.status_reason, owner=row.owner, driver=row.driver,
                   heartbeat_at=_utc(row.heartbeat_at), stop_requested=bool(row.stop_requested))


@dataclass(frozen=True)
class GenerationSnapshot:
    id: int
    run_id: int
    index: int
    state: dict[str, Any]

    @classmethod
    def of(cls, row: m.Generation) -> GenerationSnapshot:
        return cls(row.id, row.run_id, row.index, dict(row.state or {}))


@dataclass(frozen=True)
class CandidateSnapshot:
    id: int
    run_id: int
    generation_id: int | None
    genome: dict[str, Any]
    genome_hash: str
    arch_spec: dict[str, Any] | None
    analytic_costs: dict[str, Any] | None
    proxy_metrics: dict[str, Any] | None
    created_at: datetime | None
    role: str = "candidate"
    label: str | None = None
    export_error: str | None = None

    @property
    def is_baseline(self) -> bool:
        return self.role == m.CandidateRole.BASELINE.value

    @classmethod
    def of(cls, row: m.Candidate) -> CandidateSnapshot:
        return cls(
            id=row.id,
            run_id=row.run_id,
            generation_id=row.generation_id,
            genome=dict(row.genome),
            genome_hash=row.genome_hash,
            arch_spec=row.arch_spec,
            analytic_costs=row.analytic_costs,
            proxy_metrics=row.proxy_metrics,
            created_at=_utc(row.created_at),
            role=row.role or m.CandidateRole.CANDIDATE.value,
            label=row.label,
            export_error=row.export_error,
        )


@dataclass(frozen=True)
class ArtifactSnapshot:
    id: int
    candidate_id: int | None
    format: str
    quant: str
    sha256: str
    size_bytes: int
    path: str  # relative to the artifact store
    created_at: datetime | None

    @classmethod
    def of(cls, row: m.Artifact) -> ArtifactSnapshot:
        return cls(
            id=row.id,
            candidate_id=row.candidate_id,
            format=row.format,
            quant=row.quant,
            sha256=row.sha256,
            size_bytes=row.size_bytes,
            path=row.path,
            created_at=_utc(row.created_at),
        )


@dataclass(frozen=True)
class JobSnapshot:
    id: int
    kind: str
    state: JobState
    artifact_id: int
    candidate_id: int | None
    device_id: int | None
    device_kind: str | None
    device_tags: tuple[str, ...]
    contexts: tuple[int, ...]
    repetitions: int
    n_gen: int
    priority: int
    lease_owner_id: int | None
    lease_token: str | None
    lease_expires_at: datetime | None
    attempts: int
    max_attempts: int
    last_error: str | None
    idempotency_key: str | None
    created_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None
    stage: str | None = None
    flash_attn: bool | None = None
    dedupe_key: str | None = None
    runtime: str = "llama.cpp"

    @classmethod
    def of(cls, row: m.Job) -> JobSnapshot:
        return cls(
            id=row.id,
            kind=row.kind,
            state=JobState(row.state),
            artifact_id=row.artifact_id,
            candidate_id=row.candidate_id,
            device_id=row.device_id,
            device_kind=row.device_kind,
            device_tags=tuple(row.device_tags or ()),
            contexts=tuple(row.contexts),
            repetitions=row.repetitions,
            n_gen=row.n_gen,
            priority=row.priority,
            lease_owner_id=row.lease_owner_id,
            lease_token=row.lease_token,
            lease_expires_at=_utc(row.lease_expires_at),
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            last_error=row.last_error,
            idempotency_key=row.idempotency_key,
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
            finished_at=_utc(row.finished_at),
            stage=row.stage,
            flash_attn=row.flash_attn,
            dedupe_key=row.dedupe_key,
            runtime=row.runtime or "llama.cpp",
        )


@dataclass(frozen=True)
class LeaseSnapshot:
    """A job just leased, with what the agent needs to run it."""

    job: JobSnapshot
    artifact: ArtifactSnapshot
    lease_token: str
    lease_expires_at: datetime


@dataclass(frozen=True)
class MeasurementSnapshot:
    id: int
    job_id: int
    candidate_id: int | None
    artifact_id: int
    device_id: int
    context: int
    ttft_median_ms: float | None
    ttft_stddev_ms: float | None
    ttft_samples_ms: tuple[float, ...] | None
    decode_median_ms: float | None
    decode_stddev_ms: float | None
    decode_samples_ms: tuple[float, ...] | None
    peak_rss_bytes: int | None
    oom: bool
    error: str | None
    temp_before_c: float | None
    temp_after_c: float | None
    runtime: dict[str, Any]
    flagged_hot: bool
    flagged_noisy: bool
    created_at: datetime | None
    thermal: dict[str, Any] | None = field(default=None, compare=False)
    tries: int = 1
    conditions: dict[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, row: m.Measurement) -> MeasurementSnapshot:
        def samples(v: list[Any] | None) -> tuple[float, ...] | None:
            return tuple(float(x) for x in v) if v is not None else None

        return cls(
            id=row.id,
            job_id=row.job_id,
            candidate_id=row.candidate_id,
            artifact_id=row.artifact_id,
            device_id=row.device_id,
            context=row.context,
            ttft_median_ms=row.ttft_median_ms,
            ttft_stddev_ms=row.ttft_stddev_ms,
            ttft_samples_ms=samples(row.ttft_samples_ms),
            decode_median_ms=row.decode_median_ms,
            decode_stddev_ms=row.decode_stddev_ms,
            decode_samples_ms=samples(row.decode_samples_ms),
            peak_rss_bytes=row.peak_rss_bytes,
            oom=row.oom,
            error=row.error,
            temp_before_c=row.temp_before_c,
            temp_after_c=row.temp_after_c,
            runtime=dict(row.runtime or {}),
            flagged_hot=row.flagged_hot,
            flagged_noisy=row.flagged_noisy,
            created_at=_utc(row.created_at),
            thermal=row.thermal,
            tries=row.tries or 1,
            conditions=row.conditions,
        )


@dataclass(frozen=True)
class ResultSnapshot:
    """The answer to a result submission; the same answer for a resubmission with its key."""

    job_id: int
    state: JobState
    idempotency_key: str
    measurement_ids: tuple[int, ...]
    flagged_hot: tuple[int, ...]  # contexts
    flagged_noisy: tuple[int, ...]
