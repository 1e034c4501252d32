"""Processes as /proc shows them, for tests that wait for a benchmark to start or to end."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.wait import wait_for


def _argvs() -> Iterator[tuple[int, list[bytes]]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:  # gone meanwhile
                continue
            yield int(entry), argv


def _program(argv: list[bytes]) -> bytes:
    return argv[0].rsplit(b"/", 1)[-1]


def sleepers(seconds: str) -> list[int]:
    """PIDs of live ``sleep <seconds>`` processes (the scripted benchmark's sleep mode; each
    test picks a duration no other test uses, so the match is its own benchmark)."""
    return [pid for pid, argv in _argvs()
            if _program(argv) == b"sleep" and argv[1:2] == [seconds.encode()]]


def in_session(sid: int, program: str) -> list[int]:
    """PIDs of live processes of session ``sid`` running ``program`` (a basename): what a
    process started with ``start_new_session=True`` (its pid is ``sid``) runs, whatever
    process groups its children made."""
    found = []
    for pid, argv in _argvs():
        if _program(argv) == program.encode() and alive(pid):
            try:
                if os.getsid(pid) == sid:
                    found.append(pid)
            except ProcessLookupError:
                continue
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (exists and is not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_owner(
    owner: subprocess.Popen[str], how: signal.Signals, marker: str, *, bench: str, by: str
) -> str:
    """Once ``owner``'s benchmark (``sleepers(marker)``) runs, send ``how`` to ``owner``; wait
    for both to end and return ``owner``'s output. Whatever still runs after is killed, so a
    failing test leaves no process behind."""
    try:
        wait_for(f"{bench} to start", lambda: sleepers(marker), 60)
        owner.send_signal(how)
        output, _ = owner.communicate(timeout=30)
        wait_for(f"{bench} to end with {by}", lambda: not sleepers(marker), 10)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for pid in sleepers(marker):
            os.kill(pid, signal.SIGKILL)
    return output
