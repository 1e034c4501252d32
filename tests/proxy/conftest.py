"""Shared fixtures for the star.proxy tests: one torch thread, a TINY spec, a private cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from star.genome import TINY, load_genome, scale_spec
from star.genome.spec import ArchSpec
from tests.conftest import GENOMES


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared, busy machine train fastest on one intra-op thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_spec() -> ArchSpec:
    """LFM2-350M at TINY width: 16 layers (10 short conv + 6 GQA), d=64, vocab 256."""
    return scale_spec(load_genome(GENOMES / "lfm2-350m.yaml").to_spec(), TINY)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tokenizer/token cache private to the test session (never ~/.cache)."""
    return tmp_path_factory.mktemp("star-cache")
