"""Device-side adb services of the emulated phone: shell (v1 and v2), exec and sync.

Each service runs in its own thread(s) over one ``Stream``. Behaviour follows adbd:

- shell v1 / exec (no pty): stdout and stderr share one byte stream, no exit code; the stream
  closes when the command's output ends. WRTE payloads from the host are its stdin.
- shell v2: both directions are packets ``id(1) len(4 LE) data``; ids 0 stdin, 1 stdout, 2 stderr,
  3 exit (one byte), 4 close-stdin, 5 window-size change (ignored). The exit packet is sent once
  stdout/stderr reach EOF *and* the process has exited, so a background job that keeps the output
  open keeps the service open (use ``nohup ... > file 2>&1 &`` to detach, as on a phone).
- sync: requests ``id(4) len(4) payload`` arrive split or merged across WRTE boundaries, so the
  request stream is buffered. STAT, LIST, SEND (``path,mode`` then DATA chunks <= 64 KiB then
  DONE(mtime); answer OKAY or FAIL), RECV (DATA chunks then DONE, or FAIL), QUIT.
"""

from __future__ import annotations

import os
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from tests.support.adb_sandbox import Sandbox
from tests.support.adb_wire import Stream

SYNC_DATA_MAX = 64 * 1024

ID_STDIN, ID_STDOUT, ID_STDERR, ID_EXIT, ID_CLOSE_STDIN, ID_WINDOW = 0, 1, 2, 3, 4, 5


def parse_shell_service(service: str) -> tuple[bool, str]:
    """``shell[,opt...]:cmd`` or ``exec:cmd`` -> (uses shell protocol v2, command)."""
    head, _, command = service.partition(":")
    options = head.split(",")[1:] if head.startswith("shell") else []
    return "v2" in options, command


class ShellService:
    def __init__(self, stream: Stream, sandbox: Sandbox, service: str) -> None:
        self.stream = stream
        self.v2, command = parse_shell_service(service)
        self.proc = sandbox.spawn(command if command else None, merge_stderr=not self.v2)
        self._out_lock = threading.Lock()  # one writer at a time: WRTE/OKAY pairs stay ordered

    def start(self) -> None:
        threading.Thread(target=self._pump_input, daemon=True, name="shell-stdin").start()
        threading.Thread(target=self._run, daemon=True, name="shell-out").start()

    def _emit(self, packet_id: int, data: bytes) -> None:
        with self._out_lock:
            if self.v2:
                self.stream.write(bytes([packet_id]) + struct.pack("<I", len(data)) + data)
            else:
                self.stream.write(data)

    def _pump(self, pipe, packet_id: int) -> None:
        # read1 returns what is there now, so interactive output is not held back
        limit = max(1, min(self.stream.link.peer_max_payload - 5, 64 * 1024))
        while True:
            data = pipe.read1(limit)
            if not data:
                break
            self._emit(packet_id, data)

    def _run(self) -> None:
        readers = [threading.Thread(target=self._pump, args=(self.proc.stdout, ID_STDOUT))]
        if self.v2:
            readers.append(threading.Thread(target=self._pump, args=(self.proc.stderr, ID_STDERR)))
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
        code = self.proc.wait()
        if self.v2:
            if code < 0:  # killed by a signal: the shell convention 128 + signal
                code = 128 - code
            self._emit(ID_EXIT, bytes([code & 0xFF]))
        self.stream.close()

    def _close_stdin(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def _write_stdin(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def _pump_input(self) -> None:
        buffer = b""
        while True:
            data = self.stream.read()
            if data is None:  # host closed the stream: no more stdin
                self._close_stdin()
                return
            if not self.v2:
                self._write_stdin(data)
                continue
            buffer += data
            while len(buffer) >= 5:
                packet_id = buffer[0]
                (length,) = struct.unpack("<I", buffer[1:5])
                if len(buffer) < 5 + length:
                    break
                payload, buffer = buffer[5 : 5 + length], buffer[5 + length :]
                if packet_id == ID_STDIN:
                    self._write_stdin(payload)
                elif packet_id == ID_CLOSE_STDIN:
                    self._close_stdin()


class SyncService:
    """The file sync service over one stream; ``log`` receives "sync:CMD path" entries."""

    def __init__(self, stream: Stream, sandbox: Sandbox, log: Callable[[str], None]) -> None:
        self.stream = stream
        self.sandbox = sandbox
        self.log = log
        self._buffer = bytearray()
        self._eof = False

    def start(self) -> None:
        threading.Thread(target=self._serve, daemon=True, name="sync").start()

    # -- buffered request stream -------------------------------------------------------------
    def _fill(self, n: int) -> bool:
        while len(self._buffer) < n:
            if self._eof:
                return False
            data = self.stream.read()
            if data is None:
                self._eof = True
                return False
            self._buffer += data
        return True

    def _take(self, n: int) -> bytes | None:
        if not self._fill(n):
            return None
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def _request(self) -> tuple[bytes, bytes] | None:
        header = self._take(8)
        if header is None:
            return None
        ident, length = header[:4], struct.unpack("<I", header[4:])[0]
        if ident in (b"DATA", b"DONE"):
            return ident, struct.pack("<I", length)  # DONE carries mtime in the length field
        payload = self._take(length)
        if payload is None:
            return None
        return ident, payload

    def _fail(self, message: str) -> None:
        data = message.encode()
        self.stream.write(b"FAIL" + struct.pack("<I", len(data)) + data)

    # -- requests ----------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            while True:
                request = self._request()
                if request is None:
                    break
                ident, payload = request
                path_text = payload.decode("utf-8", errors="replace")
                self.log(f"sync:{ident.decode(errors='replace')} {path_text}")
                if ident == b"QUIT":
                    break
                if ident == b"STAT":
                    self._stat(path_text)
                elif ident == b"LIST":
                    self._list(path_text)
                elif ident == b"SEND":
                    if not self._send(path_text):
                        break
                elif ident == b"RECV":
                    self._recv(path_text)
                else:
                    self._fail(f"unknown sync command {ident!r}")
                    break
        finally:
            self.stream.close()

    @staticmethod
    def _stat_tuple(path: Path) -> tuple[int, int, int]:
        try:
            st = os.lstat(path)
        except OSError:
            return 0, 0, 0
        return st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF

    def _stat(self, device_path: str) -> None:
        host, _ = self.sandbox.host_path(device_path)
        self.stream.write(b"STAT" + struct.pack("<III", *self._stat_tuple(host)))

    def _list(self, device_path: str) -> None:
        host, _ = self.sandbox.host_path(device_path)
        out = bytearray()
        try:
            names = [".", ".."] + sorted(os.listdir(host))
        except OSError:
            names = []
        for name in names:
            mode, size, mtime = self._stat_tuple(host / name)
            raw = name.encode()
            out += b"DENT" + struct.pack("<IIII", mode, size, mtime, len(raw)) + raw
        out += b"DONE" + struct.pack("<IIII", 0, 0, 0, 0)
        self.stream.write(bytes(out))

    def _send(self, spec: str) -> bool:
        device_path, _, mode_text = spec.rpartition(",")
        if not device_path:
            device_path, mode_text = spec, str(stat.S_IFREG | 0o644)
        host, writable = self.sandbox.host_path(device_path)
        mode = int(mode_text) if mode_text.isdigit() else 0o644
        error = None if writable else f"couldn't create file: Read-only file system: {device_path}"
        handle = None
        tmp = host.with_name(f".{host.name}.sync-tmp")
        if error is None:
            try:
                host.parent.mkdir(parents=True, exist_ok=True)  # adbd's fixed_push_mkdir
                handle = open(tmp, "wb")
            except OSError as exc:
                error = f"couldn't create file: {exc.strerror}: {device_path}"
        mtime = 0
        while True:
            request = self._request()
            if request is None:  # stream ended mid-transfer: drop the partial file
                if handle:
                    handle.close()
                    tmp.unlink(missing_ok=True)
                return False
            ident, payload = request
            if ident == b"DATA":
                (length,) = struct.unpack("<I", payload)
                if length > SYNC_DATA_MAX:
                    error = error or f"data chunk of {length} bytes exceeds {SYNC_DATA_MAX}"
                data = self._take(length)
                if data is None:
                    if handle:
                        handle.close()
                        tmp.unlink(missing_ok=True)
                    return False
                if handle and error is None:
                    handle.write(data)
            elif ident == b"DONE":
                (mtime,) = struct.unpack("<I", payload)
                break
            else:
                error = error or f"unexpected {ident!r} during SEND"
                break
        if handle:
            handle.close()
            if error is None:
                os.chmod(tmp, mode & 0o7777)
                if mtime:
                    os.utime(tmp, (mtime, mtime))
                os.replace(tmp, host)
                if self.sandbox.mode == "rewrite":
                    rewrite_pushed_script(self.sandbox, host)
            else:
                tmp.unlink(missing_ok=True)
        if error:
            self._fail(error)
        else:
            self.stream.write(b"OKAY" + struct.pack("<I", 0))
        return True

    def _recv(self, device_path: str) -> None:
        host, _ = self.sandbox.host_path(device_path)
        try:
            handle = open(host, "rb")
        except OSError as exc:
            self._fail(exc.strerror or "open failed")
            return
        with handle:
            while True:
                chunk = handle.read(SYNC_DATA_MAX)
                if not chunk:
                    break
                if not self.stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk):
                    return
        self.stream.write(b"DONE" + struct.pack("<I", 0))


def open_service(
    stream: Stream, sandbox: Sandbox, log: Callable[[str], None]
) -> ShellService | SyncService | None:
    """The service for an OPEN, or None to refuse it (adbd answers CLSE)."""
    service = stream.service
    if service.startswith(("shell:", "shell,", "exec:")):
        return ShellService(stream, sandbox, service)
    if service == "sync:":
        return SyncService(stream, sandbox, log)
    return None


def rewrite_pushed_script(sandbox: Sandbox, path: Path) -> None:
    """Rewrite mode only: device paths inside a pushed ``#!`` script -> sandbox paths."""
    try:
        data = path.read_bytes()
    except OSError:
        return
    if data.startswith(b"#!") and len(data) < (1 << 20):
        mode = path.stat().st_mode
        path.write_bytes(sandbox.rewrite(data.decode("utf-8", errors="surrogateescape")).encode(
            "utf-8", errors="surrogateescape"))
        path.chmod(stat.S_IMODE(mode))


