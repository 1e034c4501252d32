"""Proxy-training workers end with the process that started them (``star serve``, ``star search
run``), even when it is SIGKILLed mid-training: no trainer is left running with PPID 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

OWNER = """
from star.proxy import ProxyConfig
from star.proxy.pool import ProxyJob, ProxyPool
from tests.support.blocking_runner import block_forever
with ProxyPool(ProxyConfig(workers=1, threads=1), runner=block_forever) as pool:
    pool.run([ProxyJob(spec=None, name="forever")])
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_training_workers_end_with_their_owner(tmp_path: Path, how: signal.Signals) -> None:
    pid_file = tmp_path / "worker.pid"
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT),
                                  "STAR_TEST_PID_FILE": str(pid_file)})  # fmt: skip
    worker = 0
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists():
            assert owner.poll() is None, "the pool owner died before its worker started"
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        assert _alive(worker)
        owner.send_signal(how)
        owner.wait(30)
        deadline = time.monotonic() + 20
        while _alive(worker):
            assert time.monotonic() < deadline, f"worker {worker} outlived its owner"
            time.sleep(0.05)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if worker and _alive(worker):
            os.kill(worker, signal.SIGKILL)
