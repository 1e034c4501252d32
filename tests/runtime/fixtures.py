"""Session fixtures shared by tests/runtime and tests/measure (imported by both conftests)."""

from __future__ import annotations

import pytest

from star.runtime import RuntimeInfo, ensure_runtime


@pytest.fixture(scope="session")
def runtime() -> RuntimeInfo:
    """The first run on a fresh host builds llama.cpp (~3 min on 2 cores); later runs are instant.

    Concurrent sessions (pytest-xdist workers) serialise on the build's file lock.
    """
    return ensure_runtime()
