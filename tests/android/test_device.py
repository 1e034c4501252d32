"""``AndroidDevice`` against the emulated phone: properties, files, thermal, failures."""

from __future__ import annotations

import os
import threading
import time

import pytest

from device_agents.android import (
    AndroidDevice,
    CachePolicy,
    DeviceGone,
    DeviceProfile,
    DeviceUnauthorized,
    RemoteTimeout,
)
from device_agents.android.profile import big_cores, parse_cpufreq
from device_agents.android.thermal import parse_thermalservice
from tests.support.adb_server import AdbServer
from tests.support.emulated_phone import EmulatedPhone, thermalservice_text
from tests.support.wait import wait_for

MEMINFO = "MemTotal:        7812340 kB\nMemFree:          123456 kB\nMemAvailable:    3000000 kB\n"


def _device(server: AdbServer, phone: EmulatedPhone, **profile) -> AndroidDevice:
    return AndroidDevice.discover(server.client(), phone.serial, DeviceProfile(**profile))


def test_properties_from_getprop_and_meminfo(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    emulated_phone.set_props({
        "ro.product.model": "SM-S921B",
        "ro.soc.manufacturer": "QTI",
        "ro.soc.model": "SM8650",
        "ro.product.cpu.abi": "arm64-v8a",
        "ro.build.version.release": "14",
        "ro.build.version.sdk": "34",
    })
    emulated_phone.set_meminfo(MEMINFO)
    props = _device(adb_server, emulated_phone).properties()
    assert props.kind == "android"
    assert (props.model, props.soc, props.abi) == ("SM-S921B", "QTI SM8650", "arm64-v8a")
    assert props.os == "Android 14 (SDK 34)"
    assert props.ram_bytes == 7812340 * 1024
    assert props.cpu_cores == os.cpu_count()  # /sys/devices/system/cpu/possible is the host's


def test_soc_falls_back_to_board_platform(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    emulated_phone.set_props({"ro.soc.model": "", "ro.board.platform": "kalama"})
    assert _device(adb_server, emulated_phone).properties().soc == "kalama"


def test_discover_reports_missing_offline_and_unauthorized(adb_server: AdbServer, make_phone):
    client = adb_server.client()
    with pytest.raises(DeviceGone) as gone:
        AndroidDevice.discover(client, "127.0.0.1:1")
    assert gone.value.state is None
    locked = make_phone(authorized=False)
    with pytest.raises(DeviceUnauthorized):
        AndroidDevice.discover(client, locked.serial)
    phone = make_phone()
    phone.disconnect()
    adb_server.wait_state(phone.serial, "offline")
    with pytest.raises(DeviceGone) as offline:
        AndroidDevice.discover(client, phone.serial)
    assert offline.value.state == "offline"


def test_thermal_zones_and_thermalservice(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    emulated_phone.set_thermal({"cpu-0-0": 41.5, "battery": 30.0, "pmic-ibat": 9999999.0})
    emulated_phone.set_thermalservice(thermalservice_text(1, {"SKIN": 36.25, "CPU0": 44.0}))
    thermal = _device(adb_server, emulated_phone).thermal()
    assert thermal.zones == {
        "thermal_zone0:cpu-0-0": 41.5,
        "thermal_zone1:battery": 30.0,  # zone 2 (implausible value) dropped
        "hal:SKIN": 36.2,  # dumpsys prints one decimal
        "hal:CPU0": 44.0,
    }
    assert thermal.status == 1
    assert thermal.max_c == 44.0


def test_thermal_without_dumpsys_service(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    emulated_phone.set_thermalservice(None)  # an older phone (or a vendor that hides it)
    emulated_phone.set_thermal({"soc": 38.0})
    thermal = _device(adb_server, emulated_phone).thermal()
    assert thermal.zones == {"thermal_zone0:soc": 38.0} and thermal.status is None


def test_hot_phone_waits_for_cool_down(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    emulated_phone.set_thermal({"cpu-big": 58.0, "battery": 33.0})
    device = _device(adb_server, emulated_phone, cool_down_below_c=45.0,
                     cool_down_timeout_s=30, cool_down_poll_s=0.2)
    emulated_phone.clear_services()
    cooled_at: list[float] = []

    def hot_polls() -> list[float]:
        return [t for t, s in emulated_phone.service_log() if "thermal_zone" in s]

    def cool() -> None:
        # the phone cools once the device has read it hot twice (it is waiting)
        wait_for("two hot polls", lambda: len(hot_polls()) >= 2, 30)
        cooled_at.append(time.monotonic())
        emulated_phone.set_thermal({"cpu-big": 39.0, "battery": 33.0})

    threading.Thread(target=cool, daemon=True).start()
    outcome = device.wait_for_cooldown()
    assert outcome.reached and outcome.temperature_c == 39.0
    # it waited from its first (hot) poll at least until the phone cooled
    assert cooled_at and outcome.waited_s >= cooled_at[0] - hot_polls()[0]


def test_cool_down_gives_up_at_its_deadline(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    emulated_phone.set_thermal({"cpu-big": 70.0, "skin": 30.0})
    device = _device(adb_server, emulated_phone, cool_down_below_c=45.0,
                     cool_down_timeout_s=1.0, cool_down_poll_s=0.3)
    outcome = device.wait_for_cooldown()
    assert not outcome.reached and 1.0 <= outcome.waited_s < 10
    # a zone pattern restricts the gate to the zones that matter
    device = _device(adb_server, emulated_phone, cool_down_below_c=45.0,
                     cool_down_timeout_s=1.0, thermal_zone_pattern="skin")
    assert device.wait_for_cooldown().reached


def test_push_skips_files_whose_sha_matches(
    adb_server: AdbServer, emulated_phone: EmulatedPhone, tmp_path
):
    model = tmp_path / "m.gguf"
    model.write_bytes(os.urandom(200_000))
    device = _device(adb_server, emulated_phone)
    first = device.push_model(model)
    assert not first.skipped
    assert emulated_phone.device_path(first.remote).read_bytes() == model.read_bytes()
    again = device.push_model(model)
    assert again.skipped and again.remote == first.remote
    sends = [s for s in emulated_phone.services if s.startswith("sync:SEND")]
    assert sends == [f"sync:SEND {first.remote},{0o100644}"]  # exactly one transfer
    # a corrupted copy on the phone is detected by sha256 and pushed again
    emulated_phone.device_path(first.remote).write_bytes(b"corrupt")
    assert not device.push_model(model).skipped
    assert len([s for s in emulated_phone.services if s.startswith("sync:SEND")]) == 2


def test_cleanup_policies(adb_server: AdbServer, emulated_phone: EmulatedPhone, tmp_path):
    binary = tmp_path / "llama-bench"
    binary.write_bytes(b"#!/bin/sh\n")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    device = _device(adb_server, emulated_phone)
    root = emulated_phone.device_path("/data/local/tmp/star")

    device.push_runtime([binary])
    device.push_model(model)
    device.cleanup(policy=CachePolicy.ALL)
    assert sorted(p.name for p in root.iterdir()) == ["bin", "models"]
    device.cleanup(policy=CachePolicy.RUNTIME)
    assert sorted(p.name for p in root.iterdir()) == ["bin"]
    assert os.access(root / "bin" / "llama-bench", os.X_OK)
    device.cleanup(policy=CachePolicy.NONE)
    assert root.is_dir() and list(root.iterdir()) == []


def test_remote_root_must_be_private():
    with pytest.raises(ValueError):
        DeviceProfile(remote_root="/data")
    with pytest.raises(ValueError):
        DeviceProfile(remote_root="/data/local/tmp/../..")


def test_shell_timeout_is_a_deadline(adb_server: AdbServer, emulated_phone: EmulatedPhone):
    device = _device(adb_server, emulated_phone)
    started = time.monotonic()
    with pytest.raises(RemoteTimeout):
        # prints every 0.1 s: an idle-socket timeout would never fire
        device.shell("while :; do echo tick; sleep 0.1; done", timeout_s=1.0)
    assert time.monotonic() - started < 8


def test_phone_dropping_mid_command_is_device_gone(
    adb_server: AdbServer, emulated_phone: EmulatedPhone
):
    device = _device(adb_server, emulated_phone)
    threading.Timer(0.5, emulated_phone.disconnect).start()
    started = time.monotonic()
    with pytest.raises(DeviceGone):
        device.shell("echo partial; sleep 20", timeout_s=60)
    assert time.monotonic() - started < 15
    with pytest.raises(DeviceGone):
        device.shell("true", timeout_s=5)
    with pytest.raises(DeviceGone):
        device.transport.push(b"x", "/data/local/tmp/x", timeout_s=5)


def test_big_core_detection():
    # 1 prime + 3 big + 4 little (Snapdragon 8 Gen 2 layout)
    cores = parse_cpufreq(
        "0 2016000\n1 2016000\n2 2016000\n3 2016000\n4 2803200\n5 2803200\n6 2803200\n7 3187200\n"
    )
    assert big_cores(cores) == [4, 5, 6, 7]
    assert big_cores(parse_cpufreq("0 1800000\n1 1800000\n")) == [0, 1]  # one cluster
    assert big_cores(parse_cpufreq("0\n1\n")) == [0, 1]  # frequencies unreadable


def test_parse_thermalservice_prefers_current_hal_values():
    text = thermalservice_text(2, {"SKIN": 40.0}).replace(
        "Current temperatures from HAL:\n\tTemperature{mValue=40.0",
        "Current temperatures from HAL:\n\tTemperature{mValue=41.0",
    )
    assert parse_thermalservice(text) == (2, {"hal:SKIN": 41.0})
