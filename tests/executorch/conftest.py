"""ExecuTorch tests: single-threaded torch (tiny models on a shared machine)."""

from __future__ import annotations

import pytest

from star.runtime.executorch import RunnerInfo
from tests.support.torch_threads import one_torch_thread  # noqa: F401  (autouse)


@pytest.fixture(scope="session")
def et_runner() -> RunnerInfo:
    """star-et-bench for this host (built once, ~10 s; cached under ~/.cache/star-lab)."""
    from star.runtime.executorch import ensure_executorch_runner

    return ensure_executorch_runner()
