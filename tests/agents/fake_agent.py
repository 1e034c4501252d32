"""A real agent process with a fake runner (no llama.cpp): for fault tests that kill it.

    python -m tests.agents.fake_agent URL TOKEN SPOOL_DIR WORK_DIR [--delay S] [--max-jobs N]

The runner hashes the downloaded file (so the report names the artifact it got) and sleeps
``--delay`` seconds to stand for the measurement. It writes ``WORK_DIR/measuring-<job>`` when a
measurement starts, so a test knows when to kill it.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import threading
import time
from pathlib import Path

from device_agents.agent import Agent, DeviceLost
from device_agents.client import Backoff, CoordinatorClient
from device_agents.protocol import JobSpec
from device_agents.schemas import BenchReport, DeviceProperties
from device_agents.spool import Spool
from tests.factories import make_report


class FakeRunner:
    def __init__(self, delay_s: float = 0.0, kind: str = "x86", marker_dir: Path | None = None):
        self.kind = kind
        self.delay_s = delay_s
        self.marker_dir = marker_dir
        self.present = True
        self.lose_device_during_measure = False
        self.measured: list[int] = []

    def properties(self) -> DeviceProperties:
        return DeviceProperties(kind=self.kind, model="fake", cpu="fake cpu", cpu_cores=2)

    def available(self) -> bool:
        return self.present

    def measure(self, model_path: Path, job: JobSpec, cancel: threading.Event) -> BenchReport:
        if self.marker_dir is not None:
            (self.marker_dir / f"measuring-{job.job_id}").touch()
        sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
        # the simulated measurement takes delay_s (a paced workload, not a synchronisation)
        deadline = time.monotonic() + self.delay_s
        while time.monotonic() < deadline:
            if self.lose_device_during_measure:
                self.present = False
                raise DeviceLost("adb: device 'emulated' not found")
            time.sleep(0.02)
        self.measured.append(job.job_id)
        return make_report(sha, job.contexts, repetitions=job.repetitions)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("spool", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--max-jobs", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    client = CoordinatorClient(args.url, args.token, timeout_s=5)
    agent = Agent(
        client,
        FakeRunner(args.delay, marker_dir=args.work),
        Spool(args.spool),
        args.work,
        heartbeat_interval_s=0.2,
        poll_interval_s=0.1,
        backoff=Backoff(0.05, 0.5),
    )
    agent.run(max_jobs=args.max_jobs)


if __name__ == "__main__":
    main()
