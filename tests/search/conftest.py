"""Search tests: a migrated SQLite file per test, an artifact store, small search configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from star.db import Database
from star.db.store import ArtifactStore
from star.search.config import SearchConfig, parse_search_config
from tests.conftest import ROOT
from tests.factories import migrated_database
from tests.runtime.fixtures import runtime  # noqa: F401  (fixture: the pinned llama.cpp)

# Deployment scale of the tests: LFM2-shaped genomes at width 64, vocabulary 256 (~1 M params).
DEPLOY = {"d_model": 64, "head_dim": 16, "vocab_size": 256, "context_length": 2048}
# Proxy training in a fraction of a second per candidate, deterministic on CPU.
PROXY = {
    "tasks": ["in_context_recall"],
    "task_params": {"in_context_recall": {"vocab_size": 16, "seq_len": 32, "n_train": 64,
                                          "n_test": 32}},
    "steps": 5, "batch_size": 8, "eval_batch_size": 32, "device": "cpu",
    "workers": 2, "threads": 1,
}


def search_config(**overrides: Any) -> SearchConfig:
    """2 generations x 4 candidates around LFM2-350M, analytic objectives unless overridden."""
    doc: dict[str, Any] = {
        "name": "run", "seed": 7, "population": 4, "generations": 2,
        "base_genome": "genomes/lfm2-350m.yaml", "seed_genomes": ["genomes/lfm2-350m.yaml"],
        "deploy_scale": DEPLOY, "quant": "q8_0", "contexts": [64, 128], "repetitions": 1,
        "n_gen": 4, "objectives": ["params", "kv_bytes_per_token"],
        "budgets": [{"metric": "params", "max": 1.3}],
        "operators": {"layers": [2, 6]}, "proxy": PROXY, "poll_interval_s": 0.1,
        # one setting unless a test is about settings: one job per candidate and class
        "flash_attn": [False],
    }
    doc.update(overrides)
    return parse_search_config(doc, base_dir=ROOT)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = migrated_database(f"sqlite:///{tmp_path / 'star.db'}")
    yield database
    database.dispose()


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The same test on a SQLite file and on PostgreSQL (tests.factories starts a server)."""
    from tests.factories import database_url

    database = migrated_database(database_url(request.param, tmp_path))
    yield database
    database.dispose()
