"""SQLAlchemy 2 typed models: the lab's whole state lives in these tables.

Rows never leave ``star.db``: repository functions turn them into frozen snapshots
(``star.db.snapshots``). Times are naive UTC taken from the database clock (``star.db.clock``).
The schema is owned by the Alembic migrations in ``star/db/migrations``; these models must match
the head revision (``tests/db`` checks it).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class JobState(enum.StrEnum):
    """Lifecycle of a job: queued -> leased -> done | failed; cancelled by an operator."""

    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)

    def is_held(self) -> bool:
        """An agent holds the job (and its heartbeats extend the lease)."""
        return self is JobState.LEASED


class RunStatus(enum.StrEnum):
    """Lifecycle of a search run (``star.db.repo.lifecycle`` is the only writer).

    running -> done | failed | stopped | suspended; stopped, failed and suspended runs continue
    (running again) by deterministic replay."""

    RUNNING = "running"  # an engine drives it (heartbeat_at says when it was last heard from)
    SUSPENDED = "suspended"  # its coordinator shut down: the next coordinator continues it
    STOPPED = "stopped"  # a user (or a generation limit) stopped it: a user resumes it
    DONE = "done"
    FAILED = "failed"  # an error stopped the engine; the reason is kept; a user resumes it

    def is_finished(self) -> bool:
        return self is RunStatus.DONE

    def is_adoptable(self) -> bool:
        """Any coordinator may continue it without being asked (see ``lifecycle.orphaned``)."""
        return self is RunStatus.SUSPENDED

    def is_resumable(self) -> bool:
        """A user may continue it (``star search resume``, ``POST /runs/{id}/resume``)."""
        return self in (RunStatus.STOPPED, RunStatus.FAILED, RunStatus.SUSPENDED)


class CandidateRole(enum.StrEnum):
    """What a candidate row is in its run."""

    CANDIDATE = "candidate"  # asked by NSGA-II
    BASELINE = "baseline"  # named in the run config: measured and trained alike, never bred


class JobStage(enum.StrEnum):
    """Why the search made a profile job (staged contexts: screen everything short, confirm the
    promising at the long contexts)."""

    SCREEN = "screen"
    CONFIRM = "confirm"


class DeviceStatus(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"  # reported gone by its agent, or never seen
    RETIRED = "retired"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as the value strings; native_enum off so that adding a state is a plain migration.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        values_callable=lambda e: [m.value for m in e],
        length=16,
    )


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # android | x86
    serial: Mapped[str | None] = mapped_column(String(128))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)  # DeviceProperties
    status: Mapped[DeviceStatus] = mapped_column(
        _enum(DeviceStatus, "device_status"), default=DeviceStatus.OFFLINE
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.current_timestamp())
    retired_at: Mapped[datetime | None] = mapped_column(DateTime)
    # revision 0002
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.current_timestamp())
    # revision 0004: the lifecycle (written only by star.db.repo.lifecycle)
    status: Mapped[str | None] = mapped_column(String(16))  # RunStatus; NULL: not a search
    status_reason: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(160))  # the engine: host:pid:nonce
    driver: Mapped[str | None] = mapped_column(String(16))  # cli | coordinator
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)  # database clock
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False,
                                                 server_default=false())


class Generation(Base):
    __tablename__ = "generations"
    __table_args__ = (UniqueConstraint("run_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the search's resumable state
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.current_timestamp())


class Candidate(Base):
    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("run_id", "genome_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    generation_id: Mapped[int | None] = mapped_column(
        ForeignKey("generations.id", ondelete="SET NULL")
    )
    genome: Mapped[dict[str, Any]] = mapped_column()
    genome_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of canonical JSON
    arch_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    analytic_costs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    proxy_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.current_timestamp())
    # revision 0003: a baseline is measured and trained like a candidate but never bred
    role: Mapped[str] = mapped_column(String(16), default=CandidateRole.CANDIDATE.value,
                                      server_default=CandidateRole.CANDIDATE.value)
    label: Mapped[str | None] = mapped_column(String(128))  # a human name (baseline file stem)
    export_error: Mapped[str | None] = mapped_column(Text)  # why no deployment file exists


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int | None] = mapped_column(
        ForeignKey("candidates.id", ondelete="SET NULL"), index=True
    )
    format: Mapped[str] = mapped_column(String(16))  # gguf
    quant: Mapped[str] = mapped_column(String(32))  # q4_0, f16, ...
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Relative to the artifact store; resolved and checked to stay inside it on every use.
    path: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.current_timestamp())


class CandidateArtifact(Base):
    """A deployment file of a candidate (revision 0005). Artifacts are content-addressed, so
    one file may belong to candidates of several runs (the same genome, the same seed)."""

    __tablename__ = "candidate_artifacts"

    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True
    )
    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_lease", "state", "lease_expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="profile")
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), default=JobState.QUEUED)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="RESTRICT"))
    candidate_id: Mapped[int | None] = mapped_column(
        ForeignKey("candidates.id", ondelete="SET NULL")
    )
    # Either one device, or a device class: kind (+ tags the device must all carry).
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    device_kind: Mapped[str | None] = mapped_column(String(16))
    device_tags: Mapped[list[Any]] = mapped_column(default=list)
    contexts: Mapped[list[Any]] = mapped_column()
    repetitions: Mapped[int] = mapped_column(Integer)
    n_gen: Mapped[int] = mapped_column(Integer, default=32)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher first
    # The lease: who holds it, until when, and a token naming this attempt.
    lease_owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL")
    )
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed or expired attempts
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The idempotency key of the accepted result; a resubmission with it gets the same answer.
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.current_timestamp())
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # revision 0003
    stage: Mapped[str | None] = mapped_column(String(16))  # JobStage, NULL: made by hand
    flash_attn: Mapped[bool | None] = mapped_column(Boolean)  # pinned setting; NULL: agent's
    # the search's one-job-per (candidate, device class, stage, setting): unique, so a second
    # engine's insert fails instead of measuring twice
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # revision 0006: who runs it (star.db.runtimes: from the artifact's format)
    runtime: Mapped[str] = mapped_column(String(16), default="llama.cpp",
                                         server_default="llama.cpp")


class Measurement(Base):
    __tablename__ = "measurements"
    __table_args__ = (UniqueConstraint("job_id", "context"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    candidate_id: Mapped[int | None] = mapped_column(
        ForeignKey("candidates.id", ondelete="SET NULL"), index=True
    )
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="RESTRICT"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="RESTRICT"))
    context: Mapped[int] = mapped_column(Integer)
    ttft_median_ms: Mapped[float | None] = mapped_column(Float)
    ttft_stddev_ms: Mapped[float | None] = mapped_column(Float)
    ttft_samples_ms: Mapped[list[Any] | None] = mapped_column(JSON)
    decode_median_ms: Mapped[float | None] = mapped_column(Float)
    decode_stddev_ms: Mapped[float | None] = mapped_column(Float)
    decode_samples_ms: Mapped[list[Any] | None] = mapped_column(JSON)
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    oom: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    temp_before_c: Mapped[float | None] = mapped_column(Float)
    temp_after_c: Mapped[float | None] = mapped_column(Float)
    thermal: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # full before/after zones
    runtime: Mapped[dict[str, Any]] = mapped_column()  # RuntimeSettings
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.current_timestamp())
    # revision 0002
    flagged_hot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    flagged_noisy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # revision 0003
    tries: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    conditions: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # machine state before
