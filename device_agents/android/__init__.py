"""The Android device layer: a phone over adb, as the device agent uses it.

Light dependencies only (adbutils, pydantic, stdlib). The adbutils client is always injected::

    client = adbutils.AdbClient(host="127.0.0.1", port=5037)
    phone = AndroidDevice.discover(client, serial, DeviceProfile(threads=4, cpu_mask="0xf0"))
    props = phone.properties()
    report = phone.run_bench(model, [4096, 32768], BenchSettings(threads=4),
                             runtime_files=[...], job_id="job-17", timeout_s=900)

Errors descend from ``AndroidError``; every way the phone can drop is ``DeviceGone``.
"""

from __future__ import annotations

from device_agents.android.detached import DetachedRun, Launcher, parse_time_rss
from device_agents.android.device import AndroidDevice, PushRecord, sha256_file
from device_agents.android.errors import (
    AndroidError,
    BenchSetupError,
    CpuFeatureMissing,
    DeviceGone,
    DeviceUnauthorized,
    RemoteCommandError,
    RemoteTimeout,
    RuntimeCommitMismatch,
    TransferError,
)
from device_agents.android.profile import CachePolicy, DeviceProfile, Pinning
from device_agents.android.thermal import CoolDown, parse_thermalservice, parse_zones
from device_agents.android.transport import RemoteResult, Transport

__all__ = [
    "AndroidDevice",
    "AndroidError",
    "BenchSetupError",
    "CachePolicy",
    "CpuFeatureMissing",
    "CoolDown",
    "DetachedRun",
    "DeviceGone",
    "DeviceProfile",
    "DeviceUnauthorized",
    "Launcher",
    "Pinning",
    "PushRecord",
    "RemoteCommandError",
    "RemoteResult",
    "RemoteTimeout",
    "RuntimeCommitMismatch",
    "TransferError",
    "Transport",
    "parse_thermalservice",
    "parse_time_rss",
    "parse_zones",
    "sha256_file",
]
