"""A benchmark ends with whoever started it: stopping ``star bench`` (SIGTERM, SIGINT, or even
SIGKILL) leaves no llama-bench behind, and a cancel request stops a running one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from device_agents.llamacpp.local import run_process
from tests.conftest import ROOT
from tests.runtime.tiny_gguf import SMALLEST, write_tiny_gguf
from tests.support.fake_llama_bench import write_fake_llama_bench
from tests.support.procs import sleepers, stop_owner
from tests.support.wait import wait_for


@pytest.mark.parametrize(
    ("how", "exit_code"),
    [(signal.SIGTERM, 143), (signal.SIGINT, 143), (signal.SIGKILL, -9)],
    ids=["sigterm", "sigint", "sigkill"],
)
def test_stopping_star_bench_stops_its_llama_bench(
    tmp_path: Path, how: signal.Signals, exit_code: int
) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf", SMALLEST)
    marker = f"{80 + how / 100:.2f}"  # a sleep only this test's benchmark runs
    fake = write_fake_llama_bench(tmp_path / "bin", mode="sleep", sleep_s=float(marker))
    bench = subprocess.Popen(
        [sys.executable, "-m", "star.cli", "bench", str(model), "--contexts", "64",
         "--llama-bench", str(fake), "--repeats", "1"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # as typed in a terminal: a job started in the background by a non-interactive shell
        # (CI scripts, nohup) inherits SIGINT *ignored*, and Ctrl-C could not reach it at all
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    output = stop_owner(bench, how, marker, bench="llama-bench", by="star bench")
    assert bench.returncode == exit_code, output


def test_cancel_stops_a_running_benchmark(tmp_path: Path) -> None:
    cancel = threading.Event()
    outcomes = []
    worker = threading.Thread(
        target=lambda: outcomes.append(run_process(["/bin/sleep", "79.5"], timeout_s=600,
                                                   cancel=cancel)))  # fmt: skip
    worker.start()
    wait_for("the process to start", lambda: sleepers("79.5"), 30)
    cancel.set()
    worker.join(10)
    assert not worker.is_alive()
    (outcome,) = outcomes
    assert outcome.timed_out and "cancelled" in outcome.stderr
    assert not sleepers("79.5")
