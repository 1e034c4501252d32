"""Errors of the Android device layer: one root, and one "device gone" for every way a phone drops.

The agent needs exactly one decision from a failure: is the *device* gone (report it offline and
requeue the job), or did the *job* fail on a working device (report the failure)? ``DeviceGone``
is the first; every other ``AndroidError`` the second.
"""

from __future__ import annotations


class AndroidError(Exception):
    """Root of every error raised by ``device_agents.android``."""


class DeviceGone(AndroidError):
    """The phone is not reachable: unplugged, offline, rebooting, adb server down, or the
    connection dropped mid-call (adbutils ``AdbError``, ``EOFError``, ``OSError``, truncated
    output). ``state`` is what ``adb devices`` lists for the serial now (None: not listed)."""

    def __init__(self, serial: str, reason: str, *, state: str | None = None) -> None:
        super().__init__(f"{serial}: {reason}" + (f" (adb state: {state})" if state else ""))
        self.serial = serial
        self.reason = reason
        self.state = state


class DeviceUnauthorized(DeviceGone):
    """Listed as "unauthorized": someone must accept the host's key on the phone."""


class RemoteTimeout(AndroidError):
    """A call to a phone that is still online did not finish within its timeout."""


class RemoteCommandError(AndroidError):
    """A remote command that had to succeed exited non-zero; ``result`` holds its record."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


class TransferError(AndroidError):
    """A push or pull was refused by the phone (read-only path, full storage, missing file) or
    the pushed file's sha256 on the phone does not match the local file."""


class BenchSetupError(AndroidError):
    """The benchmark cannot be run on this phone (binary missing, not executable, unsupported)."""


class RuntimeCommitMismatch(BenchSetupError):
    """The llama-bench on the phone reports another llama.cpp commit than the coordinator pins:
    its figures would not be comparable with any other device's."""


class CpuFeatureMissing(BenchSetupError):
    """The phone's CPU lacks an instruction set extension the pushed build was compiled for
    (e.g. the dot-product instructions of the armv8.2-a+dotprod build): it would die with
    SIGILL on every context. The fix is the other build (``android-arm64-compat``)."""
