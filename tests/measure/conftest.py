"""Fixtures for measurement tests: the pinned runtime, shared with tests/runtime."""

from __future__ import annotations

from tests.runtime.fixtures import runtime  # noqa: F401  (fixture)
