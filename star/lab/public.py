"""Snapshots -> the wire schemas of ``device_agents.protocol``."""

from __future__ import annotations

from datetime import UTC, datetime

from device_agents.protocol import (
    API_PREFIX,
    ArtifactPublic,
    ArtifactRef,
    CandidatePublic,
    DevicePublic,
    JobPublic,
    JobSpec,
    MeasurementPublic,
    RemeasurePolicy,
    ResultAck,
    RunPublic,
)
from star.db.snapshots import (
    ArtifactSnapshot,
    CandidateSnapshot,
    DeviceSnapshot,
    JobSnapshot,
    LeaseSnapshot,
    MeasurementSnapshot,
    ResultSnapshot,
    RunSnapshot,
)


def aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def device_public(d: DeviceSnapshot, *, now: datetime, offline_after_s: float) -> DevicePublic:
    return DevicePublic(
        id=d.id,
        name=d.name,
        kind=d.kind,
        serial=d.serial,
        tags=list(d.tags),
        properties=d.properties,
        status=d.status.value,
        status_reason=d.status_reason,
        online=d.is_online(aware(now), offline_after_s),
        last_seen_at=d.last_seen_at,
        created_at=d.created_at,
        retired_at=d.retired_at,
    )


def job_public(j: JobSnapshot) -> JobPublic:
    return JobPublic(
        id=j.id,
        kind=j.kind,
        state=j.state.value,
        artifact_id=j.artifact_id,
        candidate_id=j.candidate_id,
        device_id=j.device_id,
        device_kind=j.device_kind,
        device_tags=list(j.device_tags),
        contexts=list(j.contexts),
        repetitions=j.repetitions,
        n_gen=j.n_gen,
        priority=j.priority,
        lease_owner_id=j.lease_owner_id,
        lease_expires_at=j.lease_expires_at,
        attempts=j.attempts,
        max_attempts=j.max_attempts,
        last_error=j.last_error,
        created_at=j.created_at,
        finished_at=j.finished_at,
        stage=j.stage,
        flash_attn=j.flash_attn,
        runtime=j.runtime,
    )


def artifact_public(a: ArtifactSnapshot) -> ArtifactPublic:
    return ArtifactPublic(
        id=a.id,
        candidate_id=a.candidate_id,
        format=a.format,
        quant=a.quant,
        sha256=a.sha256,
        size_bytes=a.size_bytes,
        created_at=a.created_at,
    )


def job_spec(lease: LeaseSnapshot, lease_seconds: float,
             remeasure: RemeasurePolicy | None = None) -> JobSpec:
    a = lease.artifact
    return JobSpec(
        job_id=lease.job.id,
        lease_token=lease.lease_token,
        lease_expires_at=lease.lease_expires_at,
        lease_seconds=lease_seconds,
        attempt=lease.job.attempts + 1,
        artifact=ArtifactRef(
            id=a.id,
            sha256=a.sha256,
            size_bytes=a.size_bytes,
            format=a.format,
            quant=a.quant,
            url=f"{API_PREFIX}/artifacts/{a.id}/content",
        ),
        contexts=list(lease.job.contexts),
        repetitions=lease.job.repetitions,
        n_gen=lease.job.n_gen,
        flash_attn=lease.job.flash_attn,
        runtime=lease.job.runtime,
        stage=lease.job.stage,
        remeasure=remeasure or RemeasurePolicy(),
    )


def result_ack(r: ResultSnapshot) -> ResultAck:
    return ResultAck(
        job_id=r.job_id,
        state=r.state.value,
        idempotency_key=r.idempotency_key,
        measurement_ids=list(r.measurement_ids),
        flagged_hot=list(r.flagged_hot),
        flagged_noisy=list(r.flagged_noisy),
    )


def measurement_public(m: MeasurementSnapshot) -> MeasurementPublic:
    return MeasurementPublic(
        id=m.id,
        job_id=m.job_id,
        candidate_id=m.candidate_id,
        artifact_id=m.artifact_id,
        device_id=m.device_id,
        context=m.context,
        ttft_median_ms=m.ttft_median_ms,
        ttft_stddev_ms=m.ttft_stddev_ms,
        decode_median_ms=m.decode_median_ms,
        decode_stddev_ms=m.decode_stddev_ms,
        peak_rss_bytes=m.peak_rss_bytes,
        oom=m.oom,
        error=m.error,
        temp_before_c=m.temp_before_c,
        temp_after_c=m.temp_after_c,
        runtime=m.runtime,
        flagged_hot=m.flagged_hot,
        flagged_noisy=m.flagged_noisy,
        created_at=m.created_at,
        tries=m.tries,
        conditions=m.conditions,
    )


def run_public(r: RunSnapshot) -> RunPublic:
    return RunPublic(id=r.id, name=r.name, config=r.config or {}, seed=r.seed,
                     created_at=r.created_at, status=r.status.value if r.status else None,
                     status_reason=r.status_reason, driver=r.driver,
                     heartbeat_at=r.heartbeat_at, stop_requested=r.stop_requested)


def candidate_public(c: CandidateSnapshot) -> CandidatePublic:
    return CandidatePublic(
        id=c.id,
        run_id=c.run_id,
        generation_id=c.generation_id,
        genome_hash=c.genome_hash,
        genome=c.genome,
        arch_spec=c.arch_spec,
        analytic_costs=c.analytic_costs,
        proxy_metrics=c.proxy_metrics,
        created_at=c.created_at,
    )
