"""Run one benchmark process on the phone detached from adb, with the agent's own deadline.

A benchmark can run for minutes; an adb shell held open that long dies with the USB link, and
adbutils' ``timeout=`` would not bound it anyway. So the process is started detached (``setsid``
or ``nohup``, stdio to files) by a small generated job script and then *polled*:

    job.sh:  echo $$ > wrapper.pid
             [time -v] sh -c 'echo $$ > bench.pid; exec "$@" > out.txt 2> err.txt' ... 2> time.txt
             echo $? > rc.tmp; mv rc.tmp rc

Each poll is one short shell call that reads ``rc`` (present once the process has ended) and
VmHWM from /proc/<bench pid>/status (the kernel's resident high-water mark; ``exec`` keeps the
pid, so it is llama-bench's own). Where ``time -v`` exists (toybox prints ``Max RSS (KiB)``, GNU
``Maximum resident set size (kbytes)``) its figure, read at exit, is exact; polled VmHWM can miss
the last ~poll interval. The peak is the larger of the two. At the deadline the agent kills the
process group and reports ``timed_out``; exit 137 otherwise means SIGKILL from the low-memory
killer (OOM at this context).
"""

from __future__ import annotations

import re
import shlex
import threading
import time
from dataclasses import dataclass

from device_agents.android.errors import BenchSetupError, DeviceGone, RemoteTimeout
from device_agents.android.transport import Transport
from device_agents.llamacpp.results import RunOutcome

_TIME_RSS = (
    re.compile(r"Max RSS \(KiB\):\s*(\d+)"),  # toybox time -v
    re.compile(r"Maximum resident set size \(kbytes\):\s*(\d+)"),  # GNU time -v
)
_VMHWM = re.compile(r"^VmHWM:\s*(\d+)\s*kB", re.MULTILINE)
_NAME = re.compile(r"^Name:\s*(\S+)", re.MULTILINE)
TIME_CANDIDATES = ("env time -v", "toybox time -v")

_JOB_SCRIPT = """\
#!/system/bin/sh
# STAR lab detached benchmark job (generated; one process per file)
cd "$(dirname "$0")" || exit 1
echo $$ > wrapper.pid
{time_prefix}sh -c 'echo $$ > bench.pid; exec "$@" > out.txt 2> err.txt' bench {argv} 2> time.txt
echo $? > rc.tmp
mv rc.tmp rc
"""


def parse_time_rss(text: str) -> int | None:
    """Peak RSS in bytes from a ``time -v`` report (toybox or GNU), None if absent."""
    for pattern in _TIME_RSS:
        match = pattern.search(text)
        if match:
            return int(match.group(1)) * 1024
    return None


def detect_time_v(transport: Transport, *, timeout_s: float) -> str | None:
    """A command prefix whose ``-v`` report carries max RSS, or None (fall back to VmHWM).

    ``env time`` finds the executable ``time`` on PATH rather than the shell keyword."""
    for prefix in TIME_CANDIDATES:
        result = transport.shell(f"{prefix} true", timeout_s=timeout_s)
        if result.ok and parse_time_rss(result.stdout + result.stderr):
            return prefix
    return None


@dataclass(frozen=True)
class Launcher:
    """How detached processes are started on this phone (detected once per device)."""

    detach: str  # "setsid" or "nohup"
    time_prefix: str | None  # e.g. "env time -v"; None: VmHWM polling only

    @classmethod
    def detect(cls, transport: Transport, *, timeout_s: float) -> Launcher:
        has_setsid = transport.shell(
            "command -v setsid >/dev/null 2>&1", timeout_s=timeout_s
        ).ok
        return cls(
            detach="setsid" if has_setsid else "nohup",
            time_prefix=detect_time_v(transport, timeout_s=timeout_s),
        )


@dataclass(frozen=True)
class PollState:
    finished: bool
    returncode: int | None
    vmhwm_bytes: int | None


def parse_poll(text: str, expected_name: str) -> PollState:
    """Output of the poll command: ``rc`` content, a ``@@`` line, then /proc status lines."""
    rc_part, _, status = text.partition("@@")
    rc_text = rc_part.strip()
    name = _NAME.search(status)
    hwm = _VMHWM.search(status)
    # a pid can be reused once the process is gone: trust VmHWM only from the right program
    same = name is not None and name.group(1) == expected_name[:15]
    vmhwm = int(hwm.group(1)) * 1024 if (hwm and same) else None
    if rc_text.lstrip("-").isdigit():
        return PollState(True, int(rc_text), vmhwm)
    return PollState(False, None, vmhwm)


class DetachedRun:
    """One process in ``job_dir`` on the phone: ``start``, then ``wait`` (polls, deadline)."""

    def __init__(
        self,
        transport: Transport,
        launcher: Launcher,
        argv: list[str],
        job_dir: str,
        *,
        env: dict[str, str] | None = None,
        call_timeout_s: float = 30.0,
    ) -> None:
        self.transport = transport
        self.launcher = launcher
        self.argv = list(argv)
        self.job_dir = job_dir.rstrip("/")
        self.env = dict(env or {})
        self.call_timeout_s = call_timeout_s
        self.started_at: float | None = None

    def script(self) -> str:
        assignments = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        argv = " ".join(shlex.quote(a) for a in self.argv)
        prefix = f"{self.launcher.time_prefix} " if self.launcher.time_prefix else ""
        if assignments:
            prefix = "env " + " ".join(assignments) + " " + prefix
        return _JOB_SCRIPT.format(time_prefix=prefix, argv=argv)

    def start(self) -> None:
        d = shlex.quote(self.job_dir)
        self.transport.shell(
            f"rm -rf {d} && mkdir -p {d}", timeout_s=self.call_timeout_s, check=True
        )
        self.transport.push(
            self.script().encode(), f"{self.job_dir}/job.sh",
            timeout_s=self.call_timeout_s, mode=0o755,
        )
        detach = "setsid" if self.launcher.detach == "setsid" else "nohup"
        self.transport.shell(
            f"cd {d} && {detach} sh ./job.sh < /dev/null > launch.log 2>&1 &",
            timeout_s=self.call_timeout_s, check=True,
        )
        self.started_at = time.monotonic()

    def _poll_command(self) -> str:
        d = shlex.quote(self.job_dir)
        return (
            f"cd {d} 2>/dev/null || exit 3; cat rc 2>/dev/null; echo @@; "
            "p=$(cat bench.pid 2>/dev/null); "
            '[ -n "$p" ] && grep -E "^(Name|VmHWM):" "/proc/$p/status" 2>/dev/null; true'
        )

    def poll(self) -> PollState:
        result = self.transport.shell(self._poll_command(), timeout_s=self.call_timeout_s)
        if result.returncode == 3:
            raise BenchSetupError(f"job directory {self.job_dir} vanished from the phone")
        return parse_poll(result.stdout, self.argv[0].rsplit("/", 1)[-1])

    def kill(self) -> None:
        """SIGKILL the benchmark, then the job's process group / wrapper."""
        d = shlex.quote(self.job_dir)
        self.transport.shell(
            f"cd {d} 2>/dev/null || exit 0; b=$(cat bench.pid 2>/dev/null); "
            "w=$(cat wrapper.pid 2>/dev/null); "
            '[ -n "$b" ] && kill -9 "$b" 2>/dev/null; '
            '[ -n "$w" ] && { kill -9 "-$w" 2>/dev/null; kill -9 "$w" 2>/dev/null; }; true',
            timeout_s=self.call_timeout_s,
        )

    def _read(self, name: str, max_bytes: int) -> str:
        try:
            data = self.transport.pull(
                f"{self.job_dir}/{name}", timeout_s=self.call_timeout_s, max_bytes=max_bytes
            )
        except DeviceGone:
            raise
        except Exception:  # missing or oversized: the outcome says what is known
            return ""
        return data.data.decode("utf-8", errors="replace")

    def wait(
        self, *, timeout_s: float, poll_s: float = 0.5, cancel: threading.Event | None = None
    ) -> RunOutcome:
        """Poll until the process ends or ``timeout_s`` (from start) passes; kill it then, or
        as soon as ``cancel`` is set (the agent is stopping or lost its lease)."""
        if self.started_at is None:
            raise RuntimeError("start() first")
        deadline = self.started_at + timeout_s
        peak: int | None = None
        state = PollState(False, None, None)
        timed_out = cancelled = False
        sleeper = cancel or threading.Event()
        while True:
            try:
                state = self.poll()
            except RemoteTimeout:
                state = PollState(False, None, None)  # a slow poll is not an outcome
            if state.vmhwm_bytes:
                peak = max(peak or 0, state.vmhwm_bytes)
            if state.finished:
                break
            now = time.monotonic()
            if now >= deadline or sleeper.is_set():
                timed_out = True
                cancelled = now < deadline
                self.kill()
                break
            sleeper.wait(min(poll_s, deadline - now))
        wall = time.monotonic() - self.started_at
        stdout = self._read("out.txt", 16 << 20)
        stderr = self._read("err.txt", 4 << 20)
        if cancelled:
            stderr += "\ncancelled: the measurement was stopped\n"
        if self.launcher.time_prefix:
            timed = parse_time_rss(self._read("time.txt", 1 << 20))
            if timed:
                peak = max(peak or 0, timed)
        if timed_out:
            returncode = -9
        else:
            assert state.returncode is not None
            returncode = state.returncode
        return RunOutcome(
            argv=tuple(self.argv),
            returncode=returncode,
            stdout=stdout,
            stderr=stderr,
            peak_rss_bytes=peak,
            wall_s=wall,
            timed_out=timed_out,
        )
