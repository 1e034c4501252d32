"""An emulated Android phone: the *device* side of the adb transport on 127.0.0.1:<free port>.

A real adb server connects to it (``adb connect 127.0.0.1:<port>``) and every client, adbutils
included, then talks to it exactly as to a phone on the lab bench. Shell commands run for real in
a bubblewrap sandbox (see ``adb_sandbox``), so an x86 llama-bench pushed "to the phone" runs, and
its /proc/<pid>/status is the host's.

Like a real phone it presents heterogeneous cores (``cores``: per-CPU ``cpuinfo_max_freq`` and
``cpu_capacity``), ``dumpsys thermalservice`` (the HAL's temperatures mirror the thermal zones,
with the platform's thermal status derived from the hottest), and it runs aarch64 executables
(through qemu-aarch64, see ``adb_sandbox``), so the agent's real phone build runs on it.

Test control API (all thread-safe, usable while clients are connected):
``set_props``, ``set_meminfo``, ``set_thermal``, ``set_thermalservice``, ``disconnect`` /
``allow_reconnect``, ``set_authorized``, ``services`` (log of services and sync requests),
``device_path`` (the host path behind a device path) and ``processes``.

Usage::

    with EmulatedPhone(model="Pixel Emu") as phone, AdbServer(adb_exe) as server:
        server.connect(phone)            # waits until `adb devices` lists it as "device"
        client = adbutils.AdbClient(host="127.0.0.1", port=server.port)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.adb_sandbox import MODERN_FEATURES, Sandbox
from tests.support.adb_services import open_service
from tests.support.adb_wire import (
    A_AUTH,
    A_CLSE,
    A_CNXN,
    A_OKAY,
    A_OPEN,
    A_VERSION,
    A_WRTE,
    AUTH_RSAPUBLICKEY,
    AUTH_SIGNATURE,
    AUTH_TOKEN,
    MAX_PAYLOAD,
    Link,
    Message,
    ProtocolError,
    Stream,
    read_message,
)

log = logging.getLogger(__name__)

# fixed_push_mkdir: SEND creates missing parent directories (so clients need no `mkdir -p`).
FEATURES = ("shell_v2", "cmd", "fixed_push_mkdir")

DEFAULT_PROPS = {
    "ro.product.name": "star_emu",
    "ro.product.model": "STAR Emulated Phone",
    "ro.product.device": "star_emu",
    "ro.product.manufacturer": "STAR lab",
    "ro.product.cpu.abi": "arm64-v8a",  # runs aarch64 binaries (qemu), and the host's too
    "ro.soc.model": "EMU-X86",
    "ro.board.platform": "emulated",
    "ro.hardware": "emulated",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.serialno": "EMU0001",
}


def thermal_status(max_c: float) -> int:
    """The platform thermal status (0 none, 1 light, 2 moderate, 3 severe, 4 critical) a phone
    reports at this temperature; the bands are typical of a vendor's thermal HAL config."""
    for status, below in enumerate((40.0, 45.0, 50.0, 60.0)):
        if max_c < below:
            return status
    return 4


def thermalservice_text(status: int, temperatures: dict[str, float]) -> str:
    """A ``dumpsys thermalservice`` answer in the layout Android 10+ prints."""
    cached = "".join(
        f"\tTemperature{{mValue={value:.1f}, mType=0, mName={name}, mStatus={status}}}\n"
        for name, value in temperatures.items()
    )
    return (
        "IsStatusOverride: false\n"
        "ThermalEventListeners:\n\tcallbacks: 1\n\tkilled: false\n\tbroadcasts count: -1\n"
        "ThermalStatusListeners:\n\tcallbacks: 1\n\tkilled: false\n\tbroadcasts count: -1\n"
        f"Thermal Status: {status}\n"
        f"Cached temperatures:\n{cached}"
        "HAL Ready: true\n"
        "HAL connection:\n\tThermalHAL 2.0 connected: yes\n"
        f"Current temperatures from HAL:\n{cached}"
        "Current cooling devices from HAL:\n\tCoolingDevice{mValue=0, mType=2, mName=cpu0}\n"
    )


class EmulatedPhone:
    def __init__(
        self,
        *,
        props: dict[str, str] | None = None,
        meminfo: str | None = None,
        thermal: dict[str, float] | None = None,
        authorized: bool = True,
        sandbox_mode: str = "auto",
        hide_time: bool = False,
        hide_paths: tuple[str, ...] = (),
        sandbox_root: Path | None = None,
        max_payload: int = MAX_PAYLOAD,
        cores: Sequence[tuple[int, int]] | None = None,
        cpu_features: str = MODERN_FEATURES,
        qemu_cpu: str | None = None,
    ) -> None:
        self.sandbox = Sandbox(
            sandbox_root, mode=sandbox_mode, hide_time=hide_time, hide_paths=hide_paths,
            cores=cores, cpu_features=cpu_features, qemu_cpu=qemu_cpu,
        )
        self._thermalservice_auto = True  # mirror the zones until a test sets its own text
        try:
            self._props = dict(DEFAULT_PROPS)
            self._props.update(props or {})
            self.sandbox.set_props(self._props)
            if meminfo is not None:
                self.sandbox.set_meminfo(meminfo)
            self.set_thermal(thermal if thermal is not None else {"cpu-0-0": 35.0, "battery": 30.0})
        except BaseException:
            self.sandbox.remove()
            raise
        self._authorized = authorized
        self.max_payload = max_payload  # advertised in CNXN; old phones said 4096
        self._lock = threading.Lock()
        self._services: list[tuple[float, str]] = []  # (time.monotonic(), entry)
        self._links: set[Link] = set()
        self._accepting = True
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> EmulatedPhone:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        self._listener = listener
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True, name="phone-accept").start()
        return self

    @property
    def address(self) -> str:
        """What ``adb connect`` takes, and the serial the adb server lists the phone under."""
        return f"127.0.0.1:{self.port}"

    serial = address

    def stop(self) -> None:
        self._stopped.set()
        if self._listener:
            try:
                self._listener.close()
            except OSError:
                pass
        self._drop_links()
        self.sandbox.remove()

    def __enter__(self) -> EmulatedPhone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control API -----------------------------------------------------------------------------
    def set_props(self, props: dict[str, str]) -> None:
        """Merge getprop values (an empty string deletes a key)."""
        with self._lock:
            self._props.update(props)
            self._props = {k: v for k, v in self._props.items() if v != ""}
            self.sandbox.set_props(self._props)

    def set_meminfo(self, text: str | None = None, *, total_kb: int = 0, available_kb: int = 0):
        """Answer for /proc/meminfo: the full text, or a minimal one from two figures."""
        if text is None:
            free = available_kb // 2
            text = (
                f"MemTotal:       {total_kb} kB\nMemFree:        {free} kB\n"
                f"MemAvailable:   {available_kb} kB\nBuffers:        0 kB\nCached:         0 kB\n"
            )
        self.sandbox.set_meminfo(text)

    def set_thermal(self, zones: dict[str, float]) -> None:
        """Thermal zones (type -> degrees C) as /sys/class/thermal/thermal_zoneN/{type,temp},
        and (unless a test set its own) ``dumpsys thermalservice`` with the same temperatures
        and the status they imply."""
        self.sandbox.set_thermal_zones(list(zones.items()))
        if self._thermalservice_auto:
            status = thermal_status(max(zones.values(), default=25.0))
            self.sandbox.set_dumpsys("thermalservice", thermalservice_text(status, zones))

    def set_thermalservice(self, text: str | None) -> None:
        """The answer of ``dumpsys thermalservice`` (None: the service does not exist); from
        now on ``set_thermal`` leaves it alone."""
        self._thermalservice_auto = False
        self.sandbox.set_dumpsys("thermalservice", text)

    def set_authorized(self, authorized: bool) -> None:
        """False: answer the host's CNXN with AUTH and never accept it ("unauthorized")."""
        self._authorized = authorized

    def disconnect(self) -> None:
        """Pull the cable: drop every connection and refuse new ones until allow_reconnect()."""
        self._accepting = False
        self._drop_links()

    def allow_reconnect(self) -> None:
        self._accepting = True

    @property
    def services(self) -> list[str]:
        """Services opened (``shell,v2,raw:cmd``, ``sync:``) and sync requests
        (``sync:SEND path,mode``), in order."""
        with self._lock:
            return [entry for _, entry in self._services]

    def service_log(self) -> list[tuple[float, str]]:
        """``services`` with the ``time.monotonic()`` of each entry."""
        with self._lock:
            return list(self._services)

    def clear_services(self) -> None:
        with self._lock:
            self._services.clear()

    def device_path(self, path: str) -> Path:
        """The host file behind a device path (for assertions)."""
        return self.sandbox.host_path(path)[0]

    def processes(self) -> list[int]:
        """PIDs of processes running "on the phone", detached ones included."""
        return self.sandbox.processes()

    # -- transport ----------------------------------------------------------------------
    def _log(self, entry: str) -> None:
        with self._lock:
            self._services.append((time.monotonic(), entry))

    def _drop_links(self) -> None:
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            if not self._accepting or self._stopped.is_set():
                sock.close()  # the phone is "unplugged"
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(
                target=self._serve, args=(sock,), daemon=True, name="phone-link"
            ).start()

    def _banner(self) -> bytes:
        with self._lock:
            props = self._props
            fields = ";".join(
                f"{key}={props.get(key, '')}"
                for key in ("ro.product.name", "ro.product.model", "ro.product.device")
            )
        return f"device::{fields};features={','.join(FEATURES)}".encode()

    def _serve(self, sock: socket.socket) -> None:
        link = Link(sock)
        with self._lock:
            self._links.add(link)
        streams: dict[int, Stream] = {}
        next_id = 1
        online = False
        try:
            while True:
                msg = read_message(sock, self.max_payload)
                if msg.command == A_CNXN:
                    link.peer_max_payload = max(256, min(msg.arg1, self.max_payload))
                    if self._authorized:
                        online = True
                        link.send(Message(A_CNXN, A_VERSION, self.max_payload, self._banner()))
                    else:
                        link.send(Message(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))
                elif msg.command == A_AUTH:
                    if msg.arg0 == AUTH_SIGNATURE and not self._authorized:
                        link.send(Message(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))
                    elif self._authorized and msg.arg0 in (AUTH_SIGNATURE, AUTH_RSAPUBLICKEY):
                        online = True
                        link.send(Message(A_CNXN, A_VERSION, self.max_payload, self._banner()))
                    # RSAPUBLICKEY while unauthorized: the user never taps "Allow"
                elif msg.command == A_OPEN:
                    service = msg.payload.rstrip(b"\0").decode("utf-8", errors="replace")
                    if not online:
                        link.send(Message(A_CLSE, 0, msg.arg0))
                        continue
                    self._log(service)
                    stream = Stream(link, next_id, msg.arg0, service)
                    next_id += 1
                    try:
                        handler = open_service(stream, self.sandbox, self._log)
                    except OSError as exc:
                        log.warning("service %r failed to start: %s", service, exc)
                        handler = None
                    if handler is None:
                        link.send(Message(A_CLSE, 0, msg.arg0))
                        continue
                    streams[stream.local_id] = stream
                    link.send(Message(A_OKAY, stream.local_id, msg.arg0))
                    handler.start()
                elif msg.command == A_OKAY:
                    stream = streams.get(msg.arg1)
                    if stream:
                        stream.on_okay()
                elif msg.command == A_WRTE:
                    stream = streams.get(msg.arg1)
                    if stream:
                        stream.on_write(msg.payload)
                    else:
                        link.send(Message(A_CLSE, msg.arg1, msg.arg0))
                elif msg.command == A_CLSE:
                    stream = streams.pop(msg.arg1, None)
                    if stream:
                        stream.on_close()
        except (EOFError, OSError, ProtocolError) as exc:
            log.debug("link closed: %s", exc)
        finally:
            link.close()
            for stream in streams.values():
                stream.on_close()
            with self._lock:
                self._links.discard(link)
