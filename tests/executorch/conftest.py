"""ExecuTorch tests: single-threaded torch (tiny models on a shared machine)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from star.runtime.executorch import RunnerInfo


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def et_runner() -> RunnerInfo:
    """star-et-bench for this host (built once, ~10 s; cached under ~/.cache/star-lab)."""
    from star.runtime.executorch import ensure_executorch_runner

    return ensure_executorch_runner()
