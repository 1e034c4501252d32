"""Agents against a real coordinator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.android.conftest import (  # noqa: F401  (adb fixtures for test_android_agent.py)
    _never_start_default_adb_server,
    adb_client,
    adb_server,
    emulated_phone,
    make_phone,
)
from tests.lab.conftest import Lab, start_lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from start_lab(tmp_path, lease_seconds=2.0, reaper_interval_s=0.2)
