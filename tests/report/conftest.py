"""One simulated study for every report test: baselines, both flash-attention settings,
staged contexts and proxy quality, run by the real search engine with the device simulated at
its edge (``tests.search.test_study``); then two measurable facts are planted in its rows:

- two frontier candidates made indistinguishable within their measured spread (the second
  one's figures 2% above the first one's with 10% stddev, the same peak RSS, a proxy loss
  0.01 lower): the report must call them a tie;
- the baseline's TTFT at the screen context given a spread that covers its gap to the first
  of them: that comparison must be a tie, not a win;
- one of the first candidate's measurements flagged noisy, re-measured, with machine
  conditions: the provenance must show it.

The study runs once per session (about half a minute); tests only read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from star.db import Database
from star.db.models import Candidate, Measurement
from star.db.store import ArtifactStore
from star.report.build import build_report
from star.report.model import Report
from star.search.rundata import RunData, load_run
from tests.factories import migrated_database
from tests.search.test_study import run_study

OBJECTIVES = ["quality", "ttft_ms@128/x86", "decode_ms@128/x86", "peak_rss_mb@128/x86"]
SCREEN, CONFIRM = 64, 128


@dataclass(frozen=True)
class Study:
    url: str
    path: Path  # the SQLite file
    run: str
    run_id: int
    twin_a: str  # genome ids of the planted frontier tie
    twin_b: str
    baseline: str
    noisy_measurement: int
    config: object  # the SearchConfig the study ran with


def _best(rows: list[Measurement], context: int, attr: str) -> Measurement:
    return min((m for m in rows if m.context == context), key=lambda m: getattr(m, attr))


def _plant(db: Database, run: str) -> tuple[str, str, str, int]:
    with db.session_scope(readonly=True) as s:
        data = load_run(s, run)
    report = build_report(data)
    assert len(report.front) >= 2 and report.baselines, "the study must have a frontier"
    a, b = report.front[0], report.front[1]
    base = report.baselines[0]
    ids = {g: data.candidates[g].id for g in (a, b, base)}
    with db.session_scope() as s:
        rows = {g: list(s.scalars(select(Measurement).where(Measurement.candidate_id == cid)))
                for g, cid in ids.items()}
        first = {(m.context, m.runtime["flash_attn"]): m for m in rows[a]}
        for m in rows[a]:
            m.ttft_stddev_ms = 0.1 * (m.ttft_median_ms or 0.0)
            m.decode_stddev_ms = 0.1 * (m.decode_median_ms or 0.0)
        for m in rows[b]:
            twin = first[(m.context, m.runtime["flash_attn"])]
            m.ttft_median_ms = 1.02 * (twin.ttft_median_ms or 0.0)
            m.decode_median_ms = 1.02 * (twin.decode_median_ms or 0.0)
            m.peak_rss_bytes = twin.peak_rss_bytes
            m.ttft_stddev_ms = 0.1 * m.ttft_median_ms
            m.decode_stddev_ms = 0.1 * m.decode_median_ms
        cand_a = s.get(Candidate, ids[a])
        cand_b = s.get(Candidate, ids[b])
        assert cand_a is not None and cand_b is not None
        cand_b.proxy_metrics = {**(cand_b.proxy_metrics or {}),
                                "quality": (cand_a.proxy_metrics or {})["quality"] - 0.01}
        gap = abs(_best(rows[a], SCREEN, "ttft_median_ms").ttft_median_ms
                  - _best(rows[base], SCREEN, "ttft_median_ms").ttft_median_ms)
        for m in rows[base]:
            if m.context == SCREEN:
                m.ttft_stddev_ms = gap  # covers the gap alone: a tie
        noisy = _best(rows[a], CONFIRM, "decode_median_ms")
        noisy.flagged_noisy = True
        noisy.tries = 2
        noisy.conditions = {"load_1m": 0.42, "waited_s": 12.0, "quiet": True}
        noisy_id = noisy.id
    return a, b, base, noisy_id


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Study]:
    root = tmp_path_factory.mktemp("study")
    url = f"sqlite:///{root / 'star.db'}"
    db = migrated_database(url)
    try:
        cfg, _ = run_study(db, ArtifactStore(root / "artifacts"), objectives=OBJECTIVES,
                           staging={"confirm": [CONFIRM], "confirm_max": 3}, population=6, seed=3,
                           generations=2)
        a, b, base, noisy = _plant(db, "study")
        with db.session_scope(readonly=True) as s:
            run_id = load_run(s, "study").run.id
    finally:
        db.dispose()
    yield Study(url, root / "star.db", "study", run_id, a, b, base, noisy, cfg)


def load(study: Study) -> RunData:
    db = Database(study.url)
    try:
        with db.session_scope(readonly=True) as s:
            return load_run(s, study.run)
    finally:
        db.dispose()


@pytest.fixture(scope="session")
def data(study: Study) -> RunData:
    return load(study)


@pytest.fixture(scope="session")
def report(data: RunData) -> Report:
    return build_report(data)
