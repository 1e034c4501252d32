"""The agent loop: register, deliver the spool, then lease -> download -> measure -> report.

One agent serves one device. Its ``Runner`` (``X86Runner``, ``AndroidRunner``) measures; the agent
owns the protocol:

- every call that fails because the coordinator is down is retried with capped, jittered
  exponential backoff (``client.retrying``);
- while a job runs, a background thread heartbeats it (extending the lease);
- a finished report is spooled to disk (atomic + fsync) *before* it is sent, removed only when
  acknowledged, and spooled results are delivered first at start-up;
- a device that disappears (``DeviceLost``) is reported offline and its job goes back to the
  queue; the agent then waits for the device to come back;
- ``shutdown()`` (SIGTERM/SIGINT in ``star agent run``) stops the benchmark that is running, gives
  its job back, and ends the loop; a lost lease stops the benchmark too;
- a device whose runtime is not the coordinator's pinned one (``RuntimeMismatch``) gives its job
  back and stops the agent, naming both builds.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Protocol

from device_agents.client import (
    ArtifactCorrupt,
    Backoff,
    CoordinatorClient,
    CoordinatorUnavailable,
    Rejected,
    Stopped,
    retrying,
)
from device_agents.measure_policy import Cancelled
from device_agents.protocol import Heartbeat, JobFailure, JobSpec, ResultSubmission
from device_agents.schemas import BenchReport, DeviceProperties
from device_agents.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)


class DeviceLost(Exception):
    """The device (phone) is gone: report it offline; the job goes back to the queue."""


class JobBroken(Exception):
    """The job cannot succeed on any device (invalid model, unsupported setting): fail it."""


class RuntimeMismatch(Exception):
    """This device's llama.cpp is not the build the coordinator pins: its figures would not be
    comparable. The job goes back to the queue and the agent stops (the operator must fix it)."""


class Runner(Protocol):
    kind: str

    def properties(self) -> DeviceProperties: ...

    def available(self) -> bool:
        """Is the device there (phone listed by adb and online)?"""
        ...

    def measure(self, model_path: Path, job: JobSpec, cancel: threading.Event) -> BenchReport:
        """Measure; raise DeviceLost or JobBroken as above, anything else is a job failure."""
        ...


class _JobHeartbeat:
    """Heartbeats one job every ``interval_s`` until stopped; sets ``lost`` if the lease is gone."""

    def __init__(self, client: CoordinatorClient, job: JobSpec, interval_s: float) -> None:
        self.client = client
        self.job = job
        self.interval_s = interval_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"heartbeat-job-{job.job_id}", daemon=True
        )

    def __enter__(self) -> _JobHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 30)

    def _loop(self) -> None:
        beat = Heartbeat(job_id=self.job.job_id, lease_token=self.job.lease_token)
        while not self._stop.wait(self.interval_s):
            try:
                self.client.heartbeat(beat)
            except CoordinatorUnavailable as exc:
                log.warning("heartbeat for job %s failed (will retry): %s", self.job.job_id, exc)
            except Rejected as exc:
                log.warning("job %s: lease lost (%s)", self.job.job_id, exc)
                self.lost.set()
                return


class Agent:
    def __init__(
        self,
        client: CoordinatorClient,
        runner: Runner,
        spool: Spool,
        work_dir: Path,
        *,
        heartbeat_interval_s: float = 10.0,
        poll_interval_s: float = 5.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.runner = runner
        self.spool = spool
        self.work_dir = Path(work_dir)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.poll_interval_s = poll_interval_s
        self.backoff = backoff or Backoff()
        self.stop = threading.Event()
        self.jobs_done = 0
        self._online = True
        self._cancel: threading.Event | None = None  # the running job's, while one runs

    def shutdown(self) -> None:
        """Stop serving now: the running benchmark is stopped and its job given back."""
        self.stop.set()
        cancel = self._cancel
        if cancel is not None:
            cancel.set()

    # --- plumbing ---------------------------------------------------------------------------

    def _retry(self, call, what: str):  # type: ignore[no-untyped-def]
        def note(exc: Exception, delay: float) -> None:
            log.warning("%s: coordinator unavailable (%s); retrying in %.1f s", what, exc, delay)

        return retrying(call, backoff=self.backoff, stop=self.stop, on_retry=note)

    # --- start-up ---------------------------------------------------------------------------

    def register(self) -> None:
        me = self._retry(self.client.me, "whoami")
        if me.kind != self.runner.kind:
            raise RuntimeError(
                f"device {me.name} is registered as {me.kind}, runner is {self.runner.kind}"
            )
        props = self.runner.properties()
        self._retry(lambda: self.client.put_properties(props), "properties")
        log.info("agent for device %s (%s) registered its properties", me.name, me.kind)

    def deliver(self, entry: SpoolEntry) -> bool:
        """Send one spooled result until acknowledged; True if stored, False if refused."""
        try:
            ack = self._retry(
                lambda: self.client.submit_result(entry.job_id, entry.submission),
                f"result of job {entry.job_id}",
            )
        except Rejected as exc:
            kept = self.spool.reject(entry)
            log.error(
                "job %s: the coordinator refused the result (%s); kept in %s",
                entry.job_id,
                exc,
                kept,
            )
            return False
        self.spool.remove(entry)
        log.info("job %s: result stored (%d measurements)", entry.job_id, len(ack.measurement_ids))
        return True

    def deliver_spool(self) -> int:
        delivered = 0
        for entry in self.spool.pending():
            delivered += self.deliver(entry)
        return delivered

    # --- one job ----------------------------------------------------------------------------

    def _fail(self, job: JobSpec, reason: str, *, device_gone: bool = False, retry: bool = True):  # type: ignore[no-untyped-def]
        failure = JobFailure(
            lease_token=job.lease_token, reason=reason[:4000], device_gone=device_gone, retry=retry
        )
        try:
            self._retry(lambda: self.client.report_failure(job.job_id, failure), "failure report")
        except Rejected as exc:  # the lease is gone already; the reaper has it
            log.warning("job %s: failure report refused (%s)", job.job_id, exc)

    def run_job(self, job: JobSpec) -> None:
        model = self.work_dir / f"artifact-{job.artifact.id}.{job.artifact.format}"
        with _JobHeartbeat(self.client, job, self.heartbeat_interval_s) as beat:
            self._cancel = beat.lost  # set by a lost lease, or by shutdown()
            if self.stop.is_set():
                beat.lost.set()
            try:
                self._retry(lambda: self.client.download_artifact(job.artifact, model), "download")
                report = self.runner.measure(model, job, beat.lost)
            except DeviceLost as exc:
                log.error("job %s: device lost: %s", job.job_id, exc)
                self._fail(job, f"device lost: {exc}", device_gone=True)
                self._report_offline(str(exc))
                self._online = False
                return
            except JobBroken as exc:
                self._fail(job, f"job cannot run: {exc}", retry=False)
                return
            except RuntimeMismatch as exc:
                log.error("job %s: %s; giving the job back and stopping", job.job_id, exc)
                self._give_back(job, f"runtime mismatch: {exc}")
                raise
            except (Cancelled, Stopped) as exc:
                if self.stop.is_set():
                    self._give_back(job, "the agent was stopped while measuring")
                    raise Stopped() from exc
                log.warning("job %s: lease lost, measurement stopped", job.job_id)
                return
            except Rejected as exc:
                self._fail(job, f"the coordinator refused a request: {exc}")
                return
            except ArtifactCorrupt as exc:
                self._fail(job, str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - any runner error fails this attempt only
                log.exception("job %s failed", job.job_id)
                self._fail(job, f"{type(exc).__name__}: {exc}")
                return
            finally:
                self._cancel = None
                model.unlink(missing_ok=True)
        submission = ResultSubmission(
            lease_token=job.lease_token, idempotency_key=uuid.uuid4().hex, report=report
        )
        entry = self.spool.put(job.job_id, submission)  # on disk before anyone hears of it
        self.deliver(entry)
        self.jobs_done += 1

    def _give_back(self, job: JobSpec, reason: str) -> None:
        """One try (the agent is stopping: no backoff) to hand the job back for another device;
        if the coordinator cannot be reached, the lease expires and the reaper requeues it."""
        failure = JobFailure(lease_token=job.lease_token, reason=reason[:4000], retry=True)
        try:
            self.client.report_failure(job.job_id, failure)
        except (CoordinatorUnavailable, Rejected) as exc:
            log.warning("job %s: could not give it back (%s); its lease will expire",
                        job.job_id, exc)

    def _report_offline(self, reason: str) -> None:
        try:
            self._retry(
                lambda: self.client.heartbeat(Heartbeat(online=False, reason=reason[:2000])),
                "offline report",
            )
        except Rejected as exc:
            log.warning("offline report refused: %s", exc)

    # --- the loop ---------------------------------------------------------------------------

    def run(self, *, max_jobs: int | None = None) -> int:
        """Serve until ``stop`` is set (or ``max_jobs`` jobs ran); returns jobs completed."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.register()
            self.deliver_spool()
            while not self.stop.is_set():
                if max_jobs is not None and self.jobs_done >= max_jobs:
                    break
                if not self.runner.available():
                    if self._online:
                        self._report_offline("device not available")
                        self._online = False
                    self.stop.wait(self.poll_interval_s)
                    continue
                if not self._online:
                    self._retry(lambda: self.client.heartbeat(Heartbeat(online=True)), "online")
                    self._online = True
                response = self._retry(self.client.lease, "lease")
                if response.job is None:
                    self.stop.wait(response.retry_after_s or self.poll_interval_s)
                    continue
                log.info("job %s: leased (attempt %d)", response.job.job_id, response.job.attempt)
                self.run_job(response.job)
        except Stopped:
            log.info("agent stopped")
        return self.jobs_done
