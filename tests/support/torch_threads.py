"""One intra-op torch thread for a test module: tiny models on a shared 2-core machine train and
export fastest that way (extra threads only add stalls). Packages import the fixture from here
in their conftest: ``from tests.support.torch_threads import one_torch_thread``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
