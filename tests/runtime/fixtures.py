"""Session fixtures shared by tests/runtime, tests/measure, tests/android and tests/e2e: the
pinned llama.cpp for this host and for phones (each built once per machine, then cached)."""

from __future__ import annotations

import pytest

from star.runtime import RuntimeInfo, ensure_runtime
from star.runtime.cross import PhoneRuntime, ensure_phone_runtime


@pytest.fixture(scope="session")
def runtime() -> RuntimeInfo:
    """The first run on a fresh host builds llama.cpp (~3 min on 2 cores); later runs are instant.

    Concurrent sessions (pytest-xdist workers) serialise on the build's file lock.
    """
    return ensure_runtime()


@pytest.fixture(scope="session")
def phone_runtime() -> PhoneRuntime:
    """The static aarch64 llama-bench of ``star runtime build --target android-arm64``.

    ``scripts/setup.sh`` builds it once per machine (~9 min on 2 busy cores); a fresh host
    without it builds here first. Every later session reuses the cache.
    """
    return ensure_phone_runtime()
