"""Fixtures for the exporter tests: the pinned llama.cpp build and single-threaded torch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.runtime.fixtures import runtime  # noqa: F401  (fixture: builds llama.cpp once per host)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: extra intra-op threads only add stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
