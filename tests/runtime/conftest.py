"""Fixtures: the pinned llama.cpp build (built once per host, then cached) and a tiny GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runtime.fixtures import phone_runtime, runtime  # noqa: F401  (fixtures)
from tests.runtime.tiny_gguf import TinyConfig, write_tiny_gguf


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", TinyConfig())
