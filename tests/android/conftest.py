"""Fixtures: a private real adb server per adb build, and an emulated phone connected to it.

Every test that takes ``adb_server`` (or ``emulated_phone``) runs once per adb build found:
Debian's adb 29 and the adb 36 that the adbutils wheel ships.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import adbutils
import pytest

from device_agents.android.device import AndroidDevice
from device_agents.llamacpp.results import RunOutcome
from tests.runtime.fixtures import phone_runtime  # noqa: F401  (fixture: the aarch64 build)
from tests.support.adb_server import AdbServer, adb_builds, connected_phone
from tests.support.emulated_phone import EmulatedPhone

ADB_BUILDS = adb_builds()


@pytest.fixture(scope="session", autouse=True)
def _never_start_default_adb_server() -> Iterator[None]:
    """adbutils answers a refused connection by running ``adb start-server`` (port 5037): point
    it at /bin/false so a test whose private server is gone fails instead of starting one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADBUTILS_ADB_PATH", "/bin/false")
        yield


@pytest.fixture(scope="session", params=sorted(ADB_BUILDS) or ["missing"])
def adb_server(request: pytest.FixtureRequest) -> Iterator[AdbServer]:
    """A private ``adb nodaemon server`` (one per build and session), killed at teardown."""
    if request.param == "missing":
        pytest.fail("no adb found: apt-get install -y adb (and pip install adbutils==2.12.0)")
    server = AdbServer(ADB_BUILDS[request.param]).start()
    yield server
    server.stop()


@pytest.fixture
def adb_client(adb_server: AdbServer) -> adbutils.AdbClient:
    return adb_server.client()


@pytest.fixture
def make_phone(adb_server: AdbServer) -> Iterator[Callable[..., EmulatedPhone]]:
    """Factory: ``make_phone(**options)`` -> a connected EmulatedPhone, stopped at teardown."""
    stack: list[Any] = []

    def make(**options: Any) -> EmulatedPhone:
        context = connected_phone(adb_server, **options)
        phone = context.__enter__()
        stack.append(context)
        return phone

    yield make
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture
def emulated_phone(make_phone: Callable[..., EmulatedPhone]) -> EmulatedPhone:
    """A started, connected phone, listed by ``adb.list()`` as "device"."""
    return make_phone()


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> list[RunOutcome]:
    """Every benchmark process the phone ran in this test, in order (a spy on ``_run_one``)."""
    seen: list[RunOutcome] = []
    original = AndroidDevice._run_one

    def spy(self: AndroidDevice, *args: object, **kwargs: object) -> RunOutcome:
        outcome = original(self, *args, **kwargs)  # type: ignore[arg-type]
        seen.append(outcome)
        return outcome

    monkeypatch.setattr(AndroidDevice, "_run_one", spy)
    return seen
