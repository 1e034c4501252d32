"""Shared fixtures for the star.proxy tests: one torch thread, a TINY spec, a private cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from star.genome import TINY, load_genome, scale_spec
from star.genome.spec import ArchSpec
from tests.conftest import GENOMES
from tests.support.torch_threads import one_torch_thread  # noqa: F401  (autouse)


@pytest.fixture(scope="session")
def tiny_spec() -> ArchSpec:
    """LFM2-350M at TINY width: 16 layers (10 short conv + 6 GQA), d=64, vocab 256."""
    return scale_spec(load_genome(GENOMES / "lfm2-350m.yaml").to_spec(), TINY)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tokenizer/token cache private to the test session (never ~/.cache)."""
    return tmp_path_factory.mktemp("star-cache")
