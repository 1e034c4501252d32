"""The emulated phone through a real adb server: what the adb CLI and adbutils see."""

from __future__ import annotations

import hashlib
import io
import os
import time

import adbutils
import pytest

from device_agents.android import TransferError, Transport
from tests.support.adb_server import AdbServer
from tests.support.emulated_phone import EmulatedPhone
from tests.support.wait import wait_for


def test_adb_devices_lists_the_phone(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    listing = adb_server.adb("devices", "-l").stdout
    line = next(ln for ln in listing.splitlines() if ln.startswith(emulated_phone.serial))
    assert line.split()[1] == "device"
    assert "model:STAR_Emulated_Phone" in line  # from the CNXN banner
    infos = {i.serial: i.state for i in adb_server.client().list()}
    assert infos[emulated_phone.serial] == "device"
    features = adb_server.adb("-s", emulated_phone.serial, "features").stdout.split()
    assert {"shell_v2", "cmd"} <= set(features)


def test_shell_v1_and_v2_with_exit_codes(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    serial = emulated_phone.serial
    cli = adb_server.adb("-s", serial, "shell", "echo out; echo err >&2; exit 7")
    assert (cli.returncode, cli.stdout, cli.stderr) == (7, "out\n", "err\n")
    device = adb_server.client().device(serial)
    # v1: one raw byte stream (stderr merged), no exit code
    assert device.shell("echo a; echo b >&2") == "a\nb"
    # v2 via adbutils: separate streams and the exit code
    result = device.shell2("echo out; echo err >&2; exit 3", v2=True)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    # the agent's own v2 client
    remote = Transport(adb_server.client(), serial).shell("printf x; exit 4", timeout_s=10)
    assert (remote.returncode, remote.stdout) == (4, "x")
    logged = emulated_phone.services
    assert "shell:echo a; echo b >&2" in logged
    assert any(s.startswith("shell,v2,") and s.endswith(":printf x; exit 4") for s in logged)


def test_shell_stdin_reaches_the_command(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    import subprocess

    done = subprocess.run(
        [adb_server.adb_exe, "-P", str(adb_server.port), "-s", emulated_phone.serial,
         "shell", "tr a-z A-Z"],
        input="hello phone\n", capture_output=True, text=True, timeout=30, env=adb_server.env(),
    )
    assert (done.returncode, done.stdout) == (0, "HELLO PHONE\n")


def test_getprop_and_sandbox_paths(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    emulated_phone.set_props({"ro.soc.model": "SM8650"})
    device = adb_server.client().device(emulated_phone.serial)
    assert device.prop.get("ro.soc.model", cache=False) == "SM8650"
    assert "[ro.build.version.sdk]: [34]" in device.shell("getprop")
    # /data is the sandbox's, the rest of the root is the host's, read-only
    assert device.shell("ls -d /data/local/tmp /sdcard /system/bin/getprop") .split() == [
        "/data/local/tmp", "/sdcard", "/system/bin/getprop"]
    assert device.shell2("touch /usr/should-fail", v2=True).returncode != 0


def test_push_pull_multichunk_roundtrip(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, tmp_path
):
    data = os.urandom(300 * 1024 + 123)  # > 4 DATA chunks of 64 KiB, not a multiple
    local = tmp_path / "blob.bin"
    local.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    serial, remote = emulated_phone.serial, "/data/local/tmp/star/t/blob.bin"

    pushed = adb_server.adb("-s", serial, "push", str(local), remote)
    assert pushed.returncode == 0, pushed.stderr
    sha_line = adb_server.adb("-s", serial, "shell", f"sha256sum {remote}").stdout
    assert sha_line.split()[0] == digest
    pulled = adb_server.adb("-s", serial, "pull", remote, str(tmp_path / "back.bin"))
    assert pulled.returncode == 0, pulled.stderr
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest

    # adbutils sync (4 KiB DATA chunks) and the agent's transport (64 KiB chunks)
    device = adb_server.client().device(serial)
    device.sync.push(io.BytesIO(data), "/data/local/tmp/a.bin")
    assert device.sync.read_bytes("/data/local/tmp/a.bin") == data
    transport = Transport(adb_server.client(), serial)
    pushed_record = transport.push(local, "/data/local/tmp/b.bin", timeout_s=30)
    assert (pushed_record.returncode, pushed_record.nbytes) == (0, len(data))
    assert transport.pull("/data/local/tmp/b.bin", timeout_s=30).data == data
    mode, size, _ = transport.stat("/data/local/tmp/b.bin", timeout_s=10)
    assert size == len(data) and mode & 0o777 == 0o644
    assert transport.stat("/data/local/tmp/none", timeout_s=10) is None
    names = [f.path for f in device.sync.list("/data/local/tmp")]
    assert {"a.bin", "b.bin", "star"} <= set(names)


def test_push_to_read_only_path_fails(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    transport = Transport(adb_server.client(), emulated_phone.serial)
    with pytest.raises(TransferError, match="Read-only"):
        transport.push(b"x" * 200_000, "/system/x.bin", timeout_s=10)
    with pytest.raises(TransferError):
        transport.pull("/data/local/tmp/missing", timeout_s=10)
    assert transport.shell("echo still fine", timeout_s=10).stdout == "still fine\n"


def test_detached_process_outlives_its_shell(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    transport = Transport(adb_server.client(), emulated_phone.serial)
    started = time.monotonic()
    transport.shell(
        "cd /data/local/tmp && nohup sh -c 'echo $$ > p; sleep 30' > /dev/null 2>&1 &",
        timeout_s=10, check=True,
    )
    assert time.monotonic() - started < 5  # the service closed without waiting for the job
    written = wait_for("the detached job to write its pid", lambda: transport.shell(
        "cat /data/local/tmp/p 2>/dev/null", timeout_s=10).stdout.strip(), 10)
    pid = int(written)
    assert pid in emulated_phone.processes()
    assert transport.shell(f"kill -0 {pid}", timeout_s=10).ok


def test_unauthorized_phone(adb_server: AdbServer, make_phone):
    phone = make_phone(authorized=False)
    assert adb_server.state(phone.serial) == "unauthorized"
    with pytest.raises(adbutils.AdbError, match="unauthorized"):
        adb_server.client().device(phone.serial).shell2("true", v2=True)
    assert not any(s.startswith("shell") for s in phone.services)


def test_disconnect_and_reconnect(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    serial = emulated_phone.serial
    emulated_phone.disconnect()
    adb_server.wait_state(serial, "offline")
    assert serial not in [d.serial for d in adb_server.client().device_list()]  # hidden there
    emulated_phone.allow_reconnect()
    adb_server.wait_state(serial, "device", timeout=20)  # the server redials TCP devices
    assert adb_server.client().device(serial).shell("echo back") == "back"


def test_phone_with_small_max_payload(adb_server: AdbServer, make_phone, tmp_path):
    """An old phone advertising 4 KiB payloads: the server must split its WRTEs, and the phone
    must split its answers (sync DATA chunks of 64 KiB span many WRTEs)."""
    phone = make_phone(max_payload=4096)
    data = os.urandom(300 * 1024)
    transport = Transport(adb_server.client(), phone.serial)
    transport.push(data, "/data/local/tmp/s.bin", timeout_s=30)
    assert transport.pull("/data/local/tmp/s.bin", timeout_s=30).data == data
    out = transport.shell("head -c 20000 /dev/zero | tr '\\0' a", timeout_s=10).stdout
    assert out == "a" * 20000


def test_rewrite_mode_fallback(adb_server: AdbServer, make_phone):
    """Without bubblewrap the phone rewrites device paths in commands and pushed scripts."""
    phone = make_phone(sandbox_mode="rewrite")
    transport = Transport(adb_server.client(), phone.serial)
    transport.push(b"#!/system/bin/sh\ncat /data/local/tmp/in.txt\n", "/data/local/tmp/s.sh",
                   timeout_s=10, mode=0o755)
    transport.push(b"from the sandbox\n", "/data/local/tmp/in.txt", timeout_s=10)
    result = transport.shell("sh /data/local/tmp/s.sh; getprop ro.product.model", timeout_s=10)
    assert result.stdout == "from the sandbox\nSTAR Emulated Phone\n"
    assert phone.device_path("/data/local/tmp/in.txt").parent.is_relative_to(phone.sandbox.root)
