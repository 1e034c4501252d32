"""The repository contract, run against every backend (SQLite file, PostgreSQL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import update

from star.db import Database, DeviceStatus, JobState, db_now, repo
from star.db.errors import (
    AlreadyExistsError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
)
from star.db.models import Job
from star.db.snapshots import JobSnapshot
from star.db.store import ArtifactStore
from tests.factories import make_artifact, make_device, make_job, make_report


def _expire_lease(db: Database, job_id: int) -> None:
    """Move a lease's expiry into the past (by the database clock)."""
    with db.session_scope() as s:
        past = db_now(s).replace(year=2000)
        s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))


class TestRepositoryContract:
    # --- devices ---

    def test_device_token_is_stored_hashed_and_authenticates(self, db: Database) -> None:
        device, token = make_device(db, "phone-1", kind="android", tags=["s24", "big"])
        assert device.tags == ("big", "s24")
        with db.session_scope() as s:
            assert repo.authenticate(s, token) == repo.get_device(s, "phone-1")
            assert repo.authenticate(s, token + "x") is None
            from star.db.models import Device

            row = s.get(Device, device.id)
            assert row is not None and token not in row.token_hash
            assert row.token_hash == repo.hash_token(token)

    def test_duplicate_device_name_is_already_exists(self, db: Database) -> None:
        make_device(db, "a")
        with pytest.raises(AlreadyExistsError):
            make_device(db, "a")
        with db.session_scope() as s:  # the session is still usable after the savepoint
            assert [d.name for d in repo.list_devices(s)] == ["a"]

    def test_retired_device_cannot_authenticate(self, db: Database) -> None:
        _, token = make_device(db, "old")
        with db.session_scope() as s:
            retired = repo.retire_device(s, name="old")
        assert retired.status is DeviceStatus.RETIRED and retired.retired_at is not None
        with db.session_scope() as s:
            assert repo.authenticate(s, token) is None
            assert repo.list_devices(s) == []
            assert len(repo.list_devices(s, include_retired=True)) == 1

    def test_touch_records_last_seen_with_the_database_clock(self, db: Database) -> None:
        device, _ = make_device(db)
        with db.session_scope() as s:
            seen = repo.touch_device(s, device_id=device.id, online=True)
            now = db_now(s)
        assert seen.status is DeviceStatus.ONLINE
        assert seen.last_seen_at is not None
        assert seen.is_online(now.replace(tzinfo=seen.last_seen_at.tzinfo), 60)
        with db.session_scope() as s:
            gone = repo.touch_device(s, device_id=device.id, online=False, reason="unplugged")
        assert gone.status is DeviceStatus.OFFLINE and gone.status_reason == "unplugged"

    # --- runs, candidates, artifacts ---

    def test_candidates_are_unique_per_genome_hash(self, db: Database) -> None:
        with db.session_scope() as s:
            run = repo.create_run(s, name="r1", config={"pop": 16}, seed=7)
            gen = repo.create_generation(s, run_id=run.id, index=0)
            again = repo.create_generation(s, run_id=run.id, index=0)
            a = repo.add_candidate(s, run_id=run.id, generation_id=gen.id, genome={"x": [1, 2]})
            b = repo.add_candidate(s, run_id=run.id, genome={"x": [1, 2]})
            c = repo.add_candidate(s, run_id=run.id, genome={"x": [2, 1]})
        assert gen == again
        assert a.id == b.id != c.id
        assert a.genome_hash == repo.genome_hash({"x": [1, 2]})
        with db.session_scope() as s:
            updated = repo.update_candidate(s, candidate_id=a.id, proxy_metrics={"loss": 2.5})
            assert updated.proxy_metrics == {"loss": 2.5}
            assert [x.id for x in repo.list_candidates(s, run_id=run.id)] == [a.id, c.id]
            with pytest.raises(AlreadyExistsError):
                repo.create_run(s, name="r1")

    def test_artifact_registration_is_content_addressed(
        self, db: Database, store: ArtifactStore
    ) -> None:
        first = make_artifact(db, store, b"model bytes")
        second = make_artifact(db, store, b"model bytes")
        assert first == second
        assert store.resolve(first.path).read_bytes() == b"model bytes"
        with db.session_scope() as s:
            assert repo.get_artifact(s, first.id).sha256 == first.sha256
            with pytest.raises(NotFoundError):
                repo.get_artifact(s, 999)

    # --- jobs: lease, heartbeat, reap, fail ---

    def test_lease_matches_device_class_and_tags(self, db: Database, store: ArtifactStore) -> None:
        x86, _ = make_device(db, "laptop", kind="x86")
        phone, _ = make_device(db, "phone", kind="android", tags=["s24"])
        other, _ = make_device(db, "phone2", kind="android", tags=["pixel"])
        art = make_artifact(db, store)
        job = make_job(db, art.id, device_kind="android", device_tags=["s24"])
        with db.session_scope() as s:
            assert repo.lease_job(s, device=x86, lease_seconds=30) is None
            assert repo.lease_job(s, device=other, lease_seconds=30) is None
            lease = repo.lease_job(s, device=phone, lease_seconds=30)
        assert lease is not None and lease.job.id == job.id
        assert lease.job.state is JobState.LEASED and lease.job.lease_owner_id == phone.id
        assert lease.artifact.sha256 == art.sha256 and len(lease.lease_token) == 32
        with db.session_scope() as s:
            assert repo.lease_job(s, device=phone, lease_seconds=30) is None  # leased once

    def test_lease_gives_a_pte_only_to_a_device_that_advertises_executorch(
        self, db: Database, store: ArtifactStore
    ) -> None:
        old, _ = make_device(db, "old-agent", kind="x86")  # advertised nothing: llama.cpp only
        new, _ = make_device(db, "new-agent", kind="x86")
        with db.session_scope() as s:
            new = repo.update_properties(s, device_id=new.id, properties={
                "kind": "x86", "runtimes": ["llama.cpp", "executorch"]})
        pte = make_artifact(db, store, fmt="pte")
        job = make_job(db, pte.id)
        assert job.runtime == "executorch"
        assert make_job(db, make_artifact(db, store).id).runtime == "llama.cpp"
        with db.session_scope() as s:
            first = repo.lease_job(s, device=old, lease_seconds=30)
        assert first is not None and first.job.runtime == "llama.cpp"  # skips the .pte
        with db.session_scope() as s:
            assert repo.lease_job(s, device=old, lease_seconds=30) is None
            lease = repo.lease_job(s, device=new, lease_seconds=30)
        assert lease is not None and lease.job.id == job.id

    def test_a_job_of_an_unknown_format_is_refused(self, db: Database,
                                                   store: ArtifactStore) -> None:
        art = make_artifact(db, store, fmt="bin")
        with db.session_scope() as s, pytest.raises(ValueError, match="no runtime runs"):
            repo.create_profile_job(s, artifact_id=art.id, contexts=[128], repetitions=1,
                                    device_kind="x86")

    def test_job_for_one_named_device(self, db: Database, store: ArtifactStore) -> None:
        a, _ = make_device(db, "a")
        b, _ = make_device(db, "b")
        job = make_job(db, make_artifact(db, store).id, device_id=b.id)
        with db.session_scope() as s:
            assert repo.lease_job(s, device=a, lease_seconds=30) is None
            lease = repo.lease_job(s, device=b, lease_seconds=30)
            assert lease is not None and lease.job.id == job.id

    def test_concurrent_leases_take_each_job_exactly_once(
        self, db: Database, store: ArtifactStore
    ) -> None:
        devices = [make_device(db, f"d{i}")[0] for i in range(8)]
        art = make_artifact(db, store)
        jobs = {make_job(db, art.id).id for _ in range(20)}
        taken: list[tuple[int, int]] = []
        lock = threading.Lock()
        barrier = threading.Barrier(len(devices))

        def worker(device) -> None:  # type: ignore[no-untyped-def]
            barrier.wait()
            while True:
                with db.session_scope() as s:
                    lease = repo.lease_job(s, device=device, lease_seconds=30)
                if lease is None:
                    return
                with lock:
                    taken.append((lease.job.id, device.id))

        with ThreadPoolExecutor(len(devices)) as pool:
            list(pool.map(worker, devices))
        assert sorted(j for j, _ in taken) == sorted(jobs)

    def test_heartbeat_extends_only_the_holders_lease(
        self, db: Database, store: ArtifactStore
    ) -> None:
        dev, _ = make_device(db, "a")
        intruder, _ = make_device(db, "b")
        make_job(db, make_artifact(db, store).id)
        with db.session_scope() as s:
            lease = repo.lease_job(s, device=dev, lease_seconds=5)
        assert lease is not None
        with db.session_scope() as s:  # 60 s from now is past the lease's 5 s, on any clock
            beat = repo.heartbeat_job(
                s, job_id=lease.job.id, device_id=dev.id, lease_token=lease.lease_token,
                lease_seconds=60,
            )  # fmt: skip
        assert beat > lease.lease_expires_at
        with db.session_scope() as s, pytest.raises(ForbiddenError):
            repo.heartbeat_job(
                s, job_id=lease.job.id, device_id=intruder.id, lease_token=lease.lease_token,
                lease_seconds=60,
            )  # fmt: skip
        with db.session_scope() as s, pytest.raises(ConflictError):
            repo.heartbeat_job(
                s, job_id=lease.job.id, device_id=dev.id, lease_token="0" * 32, lease_seconds=60
            )

    def test_expired_leases_requeue_then_fail_with_the_reason(
        self, db: Database, store: ArtifactStore
    ) -> None:
        dev, _ = make_device(db)
        job = make_job(db, make_artifact(db, store).id, max_attempts=2)
        for attempt in (1, 2):
            with db.session_scope() as s:
                lease = repo.lease_job(s, device=dev, lease_seconds=30)
            assert lease is not None and lease.job.id == job.id
            _expire_lease(db, job.id)
            with db.session_scope() as s:
                assert repo.reap_expired(s) == [job.id]
                assert repo.reap_expired(s) == []  # reaped once
                snap = repo.get_job(s, job.id)
            assert snap.attempts == attempt
        assert snap.state is JobState.FAILED and snap.state.is_finished()
        assert snap.last_error is not None and "failed after 2 attempts" in snap.last_error
        assert "lease expired" in snap.last_error
        with db.session_scope() as s:
            assert repo.lease_job(s, device=dev, lease_seconds=30) is None

    def test_fail_job_requeues_and_stale_token_is_conflict(
        self, db: Database, store: ArtifactStore
    ) -> None:
        dev, _ = make_device(db)
        job = make_job(db, make_artifact(db, store).id)
        with db.session_scope() as s:
            lease = repo.lease_job(s, device=dev, lease_seconds=30)
            assert lease is not None
            failed = repo.fail_job(
                s, job_id=job.id, device_id=dev.id, lease_token=lease.lease_token,
                reason="llama-bench crashed",
            )  # fmt: skip
        assert failed.state is JobState.QUEUED and failed.attempts == 1
        assert failed.last_error == "llama-bench crashed"
        with db.session_scope() as s, pytest.raises(ConflictError):
            repo.fail_job(
                s, job_id=job.id, device_id=dev.id, lease_token=lease.lease_token, reason="again"
            )
        with db.session_scope() as s:
            lease2 = repo.lease_job(s, device=dev, lease_seconds=30)
            assert lease2 is not None
            final = repo.fail_job(
                s, job_id=job.id, device_id=dev.id, lease_token=lease2.lease_token,
                reason="model refused", retry=False,
            )  # fmt: skip
        assert final.state is JobState.FAILED and "model refused" in (final.last_error or "")

    def test_cancel(self, db: Database, store: ArtifactStore) -> None:
        job = make_job(db, make_artifact(db, store).id)
        with db.session_scope() as s:
            assert repo.cancel_job(s, job_id=job.id).state is JobState.CANCELLED
            with pytest.raises(ConflictError):
                repo.cancel_job(s, job_id=job.id)

    # --- results ---

    def _leased(self, db: Database, store: ArtifactStore, **job_kw):  # type: ignore[no-untyped-def]
        dev, _ = make_device(db, "m")
        art = make_artifact(db, store)
        make_job(db, art.id, **job_kw)
        with db.session_scope() as s:
            lease = repo.lease_job(s, device=dev, lease_seconds=30)
        assert lease is not None
        return dev, art, lease

    def test_result_is_stored_once_per_idempotency_key(
        self, db: Database, store: ArtifactStore
    ) -> None:
        dev, art, lease = self._leased(db, store)
        report = make_report(art.sha256, temp_c=50.0, spread=0.3)
        kw = dict(
            job_id=lease.job.id, device_id=dev.id, lease_token=lease.lease_token,
            idempotency_key="key-00000001", report=report,
        )  # fmt: skip
        with db.session_scope() as s:
            first = repo.submit_result(s, **kw)  # type: ignore[arg-type]
        with db.session_scope() as s:
            second = repo.submit_result(s, **kw)  # type: ignore[arg-type]
            rows = repo.list_measurements(s, job_id=lease.job.id)
            job = repo.get_job(s, lease.job.id)
        assert first == second and first.state is JobState.DONE
        assert len(rows) == 2 and first.measurement_ids == tuple(r.id for r in rows)
        assert first.flagged_hot == (128, 256) and first.flagged_noisy == (128, 256)
        assert rows[0].ttft_median_ms == 64.0 and rows[0].temp_after_c == 51.0
        assert rows[0].runtime["llama_cpp_commit"] == "abc1234"
        assert job.state is JobState.DONE and job.idempotency_key == "key-00000001"
        with db.session_scope() as s, pytest.raises(ConflictError):
            repo.submit_result(s, **{**kw, "idempotency_key": "key-00000002"})  # type: ignore[arg-type]

    def test_concurrent_duplicate_submissions_store_once(
        self, db: Database, store: ArtifactStore
    ) -> None:
        dev, art, lease = self._leased(db, store)
        report = make_report(art.sha256)

        def submit(_: int):  # type: ignore[no-untyped-def]
            with db.session_scope() as s:
                return repo.submit_result(
                    s, job_id=lease.job.id, device_id=dev.id, lease_token=lease.lease_token,
                    idempotency_key="same-key-1", report=report,
                )  # fmt: skip

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(submit, range(6)))
        assert len(set(answers)) == 1
        with db.session_scope() as s:
            assert len(repo.list_measurements(s, job_id=lease.job.id)) == 2

    def test_result_from_another_device_is_forbidden(
        self, db: Database, store: ArtifactStore
    ) -> None:
        dev, art, lease = self._leased(db, store)
        thief, _ = make_device(db, "thief")
        with db.session_scope() as s, pytest.raises(ForbiddenError):
            repo.submit_result(
                s, job_id=lease.job.id, device_id=thief.id, lease_token=lease.lease_token,
                idempotency_key="thief-key-1", report=make_report(art.sha256),
            )  # fmt: skip

    def test_report_must_answer_the_job(self, db: Database, store: ArtifactStore) -> None:
        dev, art, lease = self._leased(db, store)
        base = dict(
            job_id=lease.job.id, device_id=dev.id, lease_token=lease.lease_token,
            idempotency_key="k-invalid-1",
        )  # fmt: skip
        cases = [
            (make_report(art.sha256, (128, 512)), ("report", "contexts", 1, "context")),
            (make_report(art.sha256, (128,)), ("report", "contexts")),
            (make_report("0" * 64), ("report", "model_sha256")),
            (make_report(art.sha256).model_copy(update={"runtime": make_report(
                art.sha256).runtime.model_copy(update={"runtime": "executorch"})}),
             ("report", "runtime", "runtime")),
        ]
        for report, loc in cases:
            with db.session_scope() as s, pytest.raises(InvalidError) as info:
                repo.submit_result(s, report=report, **base)  # type: ignore[arg-type]
            assert info.value.loc == loc
        with db.session_scope() as s:
            assert repo.get_job(s, lease.job.id).state is JobState.LEASED

    def test_late_result_accepted_until_someone_else_leases(
        self, db: Database, store: ArtifactStore
    ) -> None:
        dev, art, lease = self._leased(db, store)
        _expire_lease(db, lease.job.id)
        with db.session_scope() as s:
            assert repo.reap_expired(s) == [lease.job.id]
            late = repo.submit_result(
                s, job_id=lease.job.id, device_id=dev.id, lease_token=lease.lease_token,
                idempotency_key="late-key-1", report=make_report(art.sha256),
            )  # fmt: skip
        assert late.state is JobState.DONE

    def test_stale_result_after_another_lease_is_refused(
        self, db: Database, store: ArtifactStore
    ) -> None:
        dev, art, lease = self._leased(db, store)
        _expire_lease(db, lease.job.id)
        other, _ = make_device(db, "other")
        with db.session_scope() as s:
            repo.reap_expired(s)
            again = repo.lease_job(s, device=other, lease_seconds=30)
        assert again is not None and again.job.id == lease.job.id
        with db.session_scope() as s, pytest.raises(ForbiddenError):
            repo.submit_result(
                s, job_id=lease.job.id, device_id=dev.id, lease_token=lease.lease_token,
                idempotency_key="stale-key-1", report=make_report(art.sha256),
            )  # fmt: skip

    def test_snapshots_are_frozen(self, db: Database, store: ArtifactStore) -> None:
        job = make_job(db, make_artifact(db, store).id)
        assert isinstance(job, JobSnapshot)
        with pytest.raises(AttributeError):
            job.state = JobState.DONE  # type: ignore[misc]
