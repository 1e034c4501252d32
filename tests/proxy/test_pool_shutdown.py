"""Proxy-training workers end with the process that started them (``star serve``, ``star search
run``), even when it is SIGKILLed mid-training: no trainer is left running with PPID 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.procs import alive
from tests.support.wait import wait_for

OWNER = """
from star.proxy import ProxyConfig
from star.proxy.pool import ProxyJob, ProxyPool
from tests.support.blocking_runner import block_forever
with ProxyPool(ProxyConfig(workers=1, threads=1), runner=block_forever) as pool:
    pool.run([ProxyJob(spec=None, name="forever")])
"""


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_training_workers_end_with_their_owner(tmp_path: Path, how: signal.Signals) -> None:
    pid_file = tmp_path / "worker.pid"
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT),
                                  "STAR_TEST_PID_FILE": str(pid_file)})  # fmt: skip
    worker = 0
    try:
        def started() -> bool:
            assert owner.poll() is None, "the pool owner died before its worker started"
            return pid_file.exists()

        wait_for("the worker to start", started, 120)
        worker = int(pid_file.read_text())
        assert alive(worker)
        owner.send_signal(how)
        owner.wait(30)
        wait_for(f"worker {worker} to end with its owner", lambda: not alive(worker), 20)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if worker and alive(worker):
            os.kill(worker, signal.SIGKILL)
