"""Fixtures for the exporter tests: the pinned llama.cpp build and single-threaded torch."""

from __future__ import annotations

from tests.runtime.fixtures import runtime  # noqa: F401  (fixture: builds llama.cpp once per host)
from tests.support.torch_threads import one_torch_thread  # noqa: F401  (autouse)
