"""A private, real adb server for tests: ``adb -P <free port> nodaemon server``.

It runs with ``HOME=<tmp>`` (its own adbkey), ``ADB_MDNS=0 ADB_USB=0 ADB_EMU=0`` (no LAN
discovery, no USB or emulator scanning), so it sees only the emulated phones it is told to
``connect`` and never touches a lab's server on 5037.

Two adb builds are exercised: Debian's ``adb`` (29.0.6) and the adb 36 that the adbutils wheel
ships. Note ``adbutils.adb_path()`` prefers an ``adb`` on PATH, so the wheel's binary is located
through its package directory instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbutils

from tests.support.emulated_phone import EmulatedPhone
from tests.support.wait import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def adb_builds() -> dict[str, str]:
    """Available adb executables by id: "debian-29" (/usr/bin/adb), "wheel-36" (adbutils')."""
    found: dict[str, str] = {}
    system = shutil.which("adb")
    if system:
        found["debian-29"] = os.path.realpath(system)
    wheel = Path(adbutils.__file__).parent / "binaries" / "adb"
    if wheel.is_file() and os.access(wheel, os.X_OK):
        found["wheel-36"] = str(wheel)
    return found


class AdbServer:
    def __init__(self, adb_exe: str, *, port: int | None = None) -> None:
        self.adb_exe = adb_exe
        self.port = port or free_port()
        self.home = Path(tempfile.mkdtemp(prefix="adb-home-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.home / "server.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROID_", "ADB_"))}
        env.update(HOME=str(self.home), ADB_MDNS="0", ADB_USB="0", ADB_EMU="0")
        env["ANDROID_ADB_SERVER_PORT"] = str(self.port)
        return env

    def start(self, timeout: float = 30.0) -> AdbServer:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.adb_exe, "-P", str(self.port), "nodaemon", "server"],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                log_text = self.log_path.read_text(errors="replace")
                raise RuntimeError(f"adb server exited: {log_text}")
            # probe with a bare socket first: adbutils answers a refused connection by running
            # `adb start-server`, which would start a daemon on the default port 5037
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                self.client().server_version()
                return True
            except (adbutils.AdbError, OSError):
                return False

        try:
            wait_for(f"the adb server on port {self.port} to answer", answers, timeout)
        except AssertionError:
            self.stop()
            raise
        return self

    def client(self) -> adbutils.AdbClient:
        return adbutils.AdbClient(host="127.0.0.1", port=self.port, socket_timeout=30)

    def adb(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run the adb *client* of this build against this server (``adb -P port ...``)."""
        return subprocess.run(
            [self.adb_exe, "-P", str(self.port), *args],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def state(self, serial: str) -> str | None:
        for info in self.client().list():
            if info.serial == serial:
                return info.state
        return None

    def wait_state(self, serial: str, state: str | None, timeout: float = 20.0) -> None:
        wait_for(f"{serial} to be {state!r}", lambda: self.state(serial) == state, timeout,
                 on_timeout=lambda: f"{serial} is {self.state(serial)!r}")

    def connect(self, address: str, *, state: str = "device", timeout: float = 20.0) -> None:
        """``adb connect address`` and wait until the server lists it in ``state``."""
        answer = self.client().connect(address, timeout=timeout)
        # an unauthorized phone answers "failed to authenticate" but is listed nonetheless
        if "connected" not in answer and state != "unauthorized":
            raise RuntimeError(f"adb connect {address}: {answer}")
        self.wait_state(address, state, timeout=timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> AdbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def connected_phone(server: AdbServer, **phone_options: Any) -> Iterator[EmulatedPhone]:
    """An emulated phone, started and connected to ``server``, listed as "device" (or as
    "unauthorized" when ``authorized=False``); stopped, its processes killed, on exit."""
    phone = EmulatedPhone(**phone_options).start()
    try:
        state = "device" if phone_options.get("authorized", True) else "unauthorized"
        server.connect(phone.address, state=state)
        yield phone
    finally:
        phone.stop()
        try:
            server.client().disconnect(phone.address)
        except (adbutils.AdbError, OSError):
            pass
