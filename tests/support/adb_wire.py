"""The adb transport wire format, device side: 24-byte message headers and flow-controlled streams.

A message is ``(command, arg0, arg1, data_length, data_check, magic)`` as six little-endian
uint32, followed by ``data_length`` payload bytes. ``data_check`` is the byte sum of the payload
(only checked by peers older than ``A_VERSION_SKIP_CHECKSUM``; we always fill it in) and
``magic == command ^ 0xffffffff``.

Streams: the host OPENs ``(host_id, 0, "service\\0")``; the device answers ``OKAY(dev_id, host_id)``
or ``CLSE(0, host_id)`` to refuse. Each side may have exactly one WRTE in flight per stream: the
receiver answers every WRTE with one OKAY, and the sender waits for it before the next WRTE.
``CLSE`` from either side ends the stream.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass

A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_AUTH = 0x48545541
A_STLS = 0x534C5453

A_VERSION = 0x01000001  # also A_VERSION_SKIP_CHECKSUM: peers at this version skip data_check
MAX_PAYLOAD = 1024 * 1024  # what we advertise; the host's CNXN arg1 bounds what we may send

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3

NAMES = {
    A_SYNC: "SYNC",
    A_CNXN: "CNXN",
    A_OPEN: "OPEN",
    A_OKAY: "OKAY",
    A_CLSE: "CLSE",
    A_WRTE: "WRTE",
    A_AUTH: "AUTH",
    A_STLS: "STLS",
}

_HEADER = struct.Struct("<6I")


@dataclass(frozen=True)
class Message:
    command: int
    arg0: int
    arg1: int
    payload: bytes = b""

    @property
    def name(self) -> str:
        return NAMES.get(self.command, hex(self.command))

    def pack(self) -> bytes:
        header = _HEADER.pack(
            self.command,
            self.arg0,
            self.arg1,
            len(self.payload),
            sum(self.payload) & 0xFFFFFFFF,
            self.command ^ 0xFFFFFFFF,
        )
        return header + self.payload


class ProtocolError(Exception):
    """The peer sent something that is not an adb message."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError("peer closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_message(sock: socket.socket, max_payload: int = MAX_PAYLOAD) -> Message:
    """Read one message; raises EOFError when the peer closes, ProtocolError on garbage."""
    command, arg0, arg1, length, _check, magic = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic {magic:#x} for command {command:#x}")
    if length > max_payload:
        raise ProtocolError(f"payload of {length} bytes exceeds the advertised {max_payload}")
    payload = _recv_exact(sock, length) if length else b""
    return Message(command, arg0, arg1, payload)


class Link:
    """One TCP connection to the adb server: serialised writes, the peer's max payload."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.peer_max_payload = 4096  # until the host's CNXN says otherwise
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def send(self, message: Message) -> None:
        if self.closed.is_set():
            raise EOFError("link closed")
        data = message.pack()
        with self._lock:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                self.closed.set()
                raise EOFError(f"link send failed: {exc}") from exc

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Stream:
    """Device end of one adb stream. Services read ``inbox`` and call ``write``/``close``.

    ``write`` blocks until the host has acknowledged every chunk (one OKAY per WRTE), so a slow
    reader on the host side throttles the service exactly as adbd would.
    """

    def __init__(self, link: Link, local_id: int, remote_id: int, service: str) -> None:
        self.link = link
        self.local_id = local_id
        self.remote_id = remote_id
        self.service = service
        self._acked = threading.Condition()
        self._awaiting_ack = False
        self.closed = threading.Event()  # set by CLSE from the host, link loss, or our close()
        self._close_sent = False
        self._inbox: list[bytes | None] = []
        self._inbox_cv = threading.Condition()

    # -- called by the transport's reader thread -------------------------------------------
    def on_okay(self) -> None:
        with self._acked:
            self._awaiting_ack = False
            self._acked.notify_all()

    def on_write(self, data: bytes) -> None:
        with self._inbox_cv:
            self._inbox.append(data)
            self._inbox_cv.notify_all()

    def on_close(self) -> None:
        self.closed.set()
        with self._acked:
            self._acked.notify_all()
        with self._inbox_cv:
            self._inbox.append(None)
            self._inbox_cv.notify_all()

    # -- called by the service ---------------------------------------------------------------
    def read(self) -> bytes | None:
        """Next WRTE payload from the host (acknowledged once taken), or None when closed."""
        with self._inbox_cv:
            while not self._inbox:
                self._inbox_cv.wait()
            data = self._inbox.pop(0)
        if data is None:
            with self._inbox_cv:
                self._inbox.insert(0, None)  # stay closed for later readers
            return None
        try:
            self.link.send(Message(A_OKAY, self.local_id, self.remote_id))
        except EOFError:
            pass
        return data

    def write(self, data: bytes) -> bool:
        """Send data in chunks within the host's max payload; False if the stream is gone."""
        limit = max(1, self.link.peer_max_payload)
        view = memoryview(data)
        for start in range(0, len(data), limit):
            chunk = bytes(view[start : start + limit])
            with self._acked:
                while self._awaiting_ack and not self.closed.is_set():
                    self._acked.wait(timeout=1.0)
                    if self.link.closed.is_set():
                        self.on_close()
                if self.closed.is_set():
                    return False
                self._awaiting_ack = True
            try:
                self.link.send(Message(A_WRTE, self.local_id, self.remote_id, chunk))
            except EOFError:
                self.on_close()
                return False
        return True

    def wait_drained(self, timeout: float = 30.0) -> None:
        """Wait for the last WRTE's OKAY, so a following CLSE does not overtake data."""
        with self._acked:
            self._acked.wait_for(
                lambda: not self._awaiting_ack or self.closed.is_set(), timeout=timeout
            )

    def close(self) -> None:
        if not self._close_sent:
            self._close_sent = True
            self.wait_drained()
            try:
                self.link.send(Message(A_CLSE, self.local_id, self.remote_id))
            except EOFError:
                pass
        self.closed.set()
