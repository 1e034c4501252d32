"""Calls to one phone through an injected adbutils ``AdbClient``, each with a real deadline.

adbutils' ``timeout=`` is an idle-socket timeout (a command that prints now and then never times
out) and some of its helpers open sockets with no timeout at all (``sync``, ``get_features``).
So the few services the agent needs are driven here directly over adbutils' ``AdbConnection``,
with the socket timeout re-armed to the time left before every read and write:

- ``shell,v2,raw:CMD`` (shell protocol v2: stdout, stderr and the exit code as packets);
- ``sync:`` SEND / RECV / STAT (request ``id(4) len(4) payload``, DATA chunks <= 64 KiB).

Every failure that means "the phone is not there" (``AdbError``, ``EOFError``, ``OSError``, a
shell that ends without its exit packet) becomes ``DeviceGone``; a call that runs out of time on
a phone that is still listed as "device" becomes ``RemoteTimeout``.
"""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import adbutils  # type: ignore[import-untyped]

from device_agents.android.errors import (
    AndroidError,
    DeviceGone,
    DeviceUnauthorized,
    RemoteCommandError,
    RemoteTimeout,
    TransferError,
)

SYNC_DATA_MAX = 64 * 1024  # adbd refuses larger DATA chunks
_SHELL_STDOUT, _SHELL_STDERR, _SHELL_EXIT, _SHELL_CLOSE_STDIN = 1, 2, 3, 4


@dataclass(frozen=True)
class RemoteResult:
    """The record of one remote command (STYLE.md): what ran and everything it said."""

    command: str
    returncode: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self, what: str = "") -> RemoteResult:
        """Return self, or raise RemoteCommandError naming the command and its stderr."""
        if self.returncode != 0:
            detail = (self.stderr.strip() or self.stdout.strip())[-500:]
            raise RemoteCommandError(
                f"{what or self.command!r} exited {self.returncode}: {detail}", self
            )
        return self


@dataclass(frozen=True)
class TransferResult(RemoteResult):
    """The record of one file transfer: ``nbytes`` moved; ``data`` holds a pull's content."""

    nbytes: int = 0
    data: bytes = b""


class _Deadline:
    def __init__(self, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self.end = time.monotonic() + timeout_s

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"deadline of {self.timeout_s:.1f}s passed")
        return left

    def arm(self, sock: socket.socket) -> None:
        sock.settimeout(self.left())


class Transport:
    """The phone ``serial`` behind ``client``: state, shell, push, pull. No other state."""

    def __init__(self, client: adbutils.AdbClient, serial: str) -> None:
        self.client = client
        self.serial = serial

    # -- state ----------------------------------------------------------------------
    def state(self) -> str | None:
        """What ``adb devices`` lists for the serial ("device", "offline", "unauthorized"...);
        None if not listed. ``adb.list()``, because ``device_list()`` hides offline phones."""
        try:
            for info in self.client.list():
                if info.serial == self.serial:
                    return info.state
        except (adbutils.AdbError, OSError) as exc:
            raise DeviceGone(self.serial, f"adb server unreachable: {exc}") from exc
        return None

    def ensure_online(self) -> None:
        state = self.state()
        if state == "device":
            return
        if state == "unauthorized":
            raise DeviceUnauthorized(
                self.serial, "accept the host's adb key on the phone", state=state
            )
        raise DeviceGone(self.serial, "not online", state=state)

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Map transport failures to DeviceGone / RemoteTimeout."""
        try:
            yield
        except AndroidError:
            raise
        except (TimeoutError, adbutils.AdbTimeout) as exc:
            state = self._state_quietly()
            if state == "device":
                raise RemoteTimeout(f"{self.serial}: {what}: {exc}") from exc
            raise DeviceGone(self.serial, f"{what}: {exc}", state=state) from exc
        except adbutils.AdbError as exc:
            state = self._state_quietly()
            if state == "unauthorized":
                raise DeviceUnauthorized(self.serial, f"{what}: {exc}", state=state) from exc
            raise DeviceGone(self.serial, f"{what}: {exc}", state=state) from exc
        except (EOFError, OSError) as exc:
            raise DeviceGone(self.serial, f"{what}: {exc}", state=self._state_quietly()) from exc

    def _state_quietly(self) -> str | None:
        try:
            return self.state()
        except DeviceGone:
            return None

    def _open(self, service: str, deadline: _Deadline) -> adbutils.AdbConnection:
        """A connection to ``service`` on the phone (``host:transport:`` works on every server)."""
        conn = self.client.make_connection(timeout=deadline.left())
        try:
            conn.send_command(f"host:transport:{self.serial}")
            conn.check_okay()
            deadline.arm(conn.conn)
            conn.send_command(service)
            conn.check_okay()
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _recv_exact(sock: socket.socket, n: int, deadline: _Deadline) -> bytes:
        chunks: list[bytes] = []
        while n > 0:
            deadline.arm(sock)
            chunk = sock.recv(min(n, 1 << 20))
            if not chunk:
                raise EOFError("connection closed mid-message (partial output)")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    @staticmethod
    def _send(sock: socket.socket, data: bytes, deadline: _Deadline) -> None:
        deadline.arm(sock)
        sock.sendall(data)

    # -- shell ----------------------------------------------------------------------
    def shell(self, command: str, *, timeout_s: float, check: bool = False) -> RemoteResult:
        """Run ``command`` with the phone's ``sh`` and wait at most ``timeout_s`` for its exit.

        On RemoteTimeout the command may still be running on the phone (closing the stream does
        not kill it): long work is started detached instead (``detached.py``).
        """
        deadline = _Deadline(timeout_s)
        started = time.monotonic()
        out, err = bytearray(), bytearray()
        code: int | None = None
        with self._guard(f"shell {command[:80]!r}"):
            conn = self._open(f"shell,v2,raw:{command}", deadline)
            try:
                sock = conn.conn
                self._send(sock, bytes([_SHELL_CLOSE_STDIN]) + struct.pack("<I", 0), deadline)
                while code is None:
                    header = self._recv_exact(sock, 5, deadline)
                    (length,) = struct.unpack("<I", header[1:])
                    data = self._recv_exact(sock, length, deadline) if length else b""
                    if header[0] == _SHELL_STDOUT:
                        out += data
                    elif header[0] == _SHELL_STDERR:
                        err += data
                    elif header[0] == _SHELL_EXIT:
                        code = data[0] if data else 255
            finally:
                conn.close()
        result = RemoteResult(
            command=command,
            returncode=code,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - started,
        )
        return result.check() if check else result

    # -- sync ----------------------------------------------------------------------
    @staticmethod
    def _request(ident: bytes, payload: bytes) -> bytes:
        return ident + struct.pack("<I", len(payload)) + payload

    def push(
        self, source: Path | bytes, remote_path: str, *, timeout_s: float, mode: int = 0o644
    ) -> TransferResult:
        """Write ``source`` (a local file or bytes) to ``remote_path``.

        The phone creates missing parent directories (adbd's fixed_push_mkdir) and replaces the
        file only once DONE arrives. Raises TransferError if the phone answers FAIL.
        """
        deadline = _Deadline(timeout_s)
        started = time.monotonic()
        total = 0
        with _reader(source) as handle, self._guard(f"push {remote_path}"):
            conn = self._open("sync:", deadline)
            try:
                sock = conn.conn
                spec = f"{remote_path},{0o100000 | (mode & 0o7777)}".encode()
                self._send(sock, self._request(b"SEND", spec), deadline)
                try:
                    while chunk := handle.read(SYNC_DATA_MAX):
                        self._send(sock, self._request(b"DATA", chunk), deadline)
                        total += len(chunk)
                    self._send(sock, b"DONE" + struct.pack("<I", int(time.time())), deadline)
                except OSError:
                    # adbd answers FAIL and stops reading as soon as it cannot write the file
                    self._raise_if_fail(sock, deadline, remote_path)
                    raise
                self._raise_if_fail(sock, deadline, remote_path)
                self._send(sock, self._request(b"QUIT", b""), deadline)
            finally:
                conn.close()
        return TransferResult(
            command=f"sync:SEND {remote_path}", returncode=0, stdout="", stderr="",
            duration_s=time.monotonic() - started, nbytes=total,
        )

    def _raise_if_fail(self, sock: socket.socket, deadline: _Deadline, path: str) -> None:
        status = self._recv_exact(sock, 8, deadline)
        if status[:4] == b"OKAY":
            return
        if status[:4] == b"FAIL":
            (length,) = struct.unpack("<I", status[4:])
            message = self._recv_exact(sock, length, deadline).decode(errors="replace")
            raise TransferError(f"{self.serial}: {path}: {message}")
        raise EOFError(f"unexpected sync answer {status[:4]!r}")

    def pull(
        self, remote_path: str, *, timeout_s: float, max_bytes: int = 64 << 20
    ) -> TransferResult:
        """The content of ``remote_path`` (``.data``); TransferError if it is missing or over
        ``max_bytes``."""
        deadline = _Deadline(timeout_s)
        started = time.monotonic()
        data = bytearray()
        with self._guard(f"pull {remote_path}"):
            conn = self._open("sync:", deadline)
            try:
                sock = conn.conn
                self._send(sock, self._request(b"RECV", remote_path.encode()), deadline)
                while True:
                    header = self._recv_exact(sock, 8, deadline)
                    ident, (length,) = header[:4], struct.unpack("<I", header[4:])
                    if ident == b"DONE":
                        break
                    if ident == b"FAIL":
                        message = self._recv_exact(sock, length, deadline).decode(errors="replace")
                        raise TransferError(f"{self.serial}: {remote_path}: {message}")
                    if ident != b"DATA" or length > SYNC_DATA_MAX:
                        raise EOFError(f"unexpected sync answer {ident!r} ({length} bytes)")
                    data += self._recv_exact(sock, length, deadline)
                    if len(data) > max_bytes:
                        raise TransferError(f"{self.serial}: {remote_path} exceeds {max_bytes} B")
                self._send(sock, self._request(b"QUIT", b""), deadline)
            finally:
                conn.close()
        return TransferResult(
            command=f"sync:RECV {remote_path}", returncode=0, stdout="", stderr="",
            duration_s=time.monotonic() - started, nbytes=len(data), data=bytes(data),
        )

    def stat(self, remote_path: str, *, timeout_s: float) -> tuple[int, int, int] | None:
        """(mode, size, mtime) of ``remote_path``, or None if it does not exist.
        Sizes are 32-bit in sync v1: use ``sha256sum`` to compare files, not this."""
        deadline = _Deadline(timeout_s)
        with self._guard(f"stat {remote_path}"):
            conn = self._open("sync:", deadline)
            try:
                sock = conn.conn
                self._send(sock, self._request(b"STAT", remote_path.encode()), deadline)
                answer = self._recv_exact(sock, 16, deadline)
                if answer[:4] != b"STAT":
                    raise EOFError(f"unexpected sync answer {answer[:4]!r}")
                mode, size, mtime = struct.unpack("<III", answer[4:])
                self._send(sock, self._request(b"QUIT", b""), deadline)
            finally:
                conn.close()
        return None if mode == 0 and size == 0 and mtime == 0 else (mode, size, mtime)


@contextlib.contextmanager
def _reader(source: Path | bytes) -> Iterator[BinaryIO]:
    if isinstance(source, bytes | bytearray):
        yield io.BytesIO(source)
    else:
        with open(source, "rb") as handle:
            yield handle
