"""Interrupted-and-resumed equals uninterrupted: deterministic replay from the database.

Quality comes from real proxy training (deterministic on CPU for a seed, through ProxyPool worker
processes); params is analytic. A crash is simulated by an exception the engine does not catch
(a BaseException, like a kill): the engine object is dropped and a fresh one resumes the run.
"""

from __future__ import annotations

from typing import Any

import pytest

from star.db import Database, repo
from star.db.repo import lifecycle
from star.db.store import ArtifactStore
from star.search import store
from star.search.engine import ReplayMismatch, SearchEngine
from star.search.frontier import run_frontier
from star.search.store import RunStatus
from tests.search.conftest import search_config


class Crash(BaseException):
    """Not an Exception: the engine records nothing, as if the process had been killed."""


def crash_at(generation: int, phase: str) -> Any:
    def hook(index: int, reached: str) -> None:
        if (index, reached) == (generation, phase):
            raise Crash(f"crash after generation {index} {reached}")

    return hook


def history(db: Database, name: str) -> list[dict[str, Any]]:
    with db.session_scope(readonly=True) as s:
        run = repo.get_run_by_name(s, name)
        return [g.state for g in repo.list_generations(s, run.id)]


def frontier(db: Database, name: str) -> list[tuple[str, dict[str, Any]]]:
    report = run_frontier(db, name)
    return sorted((p.genome_id, p.values) for p in report.front)


def test_crashed_and_resumed_run_equals_uninterrupted(db: Database,
                                                      artifacts: ArtifactStore) -> None:
    objectives = {"objectives": ["quality", "params"]}
    a = SearchEngine.create(db, artifacts, search_config(name="a", **objectives))
    assert a.run() is RunStatus.DONE
    assert a.trained >= 4

    # B: crash right after generation 1's candidates are persisted
    b1 = SearchEngine.create(db, artifacts, search_config(name="b", **objectives),
                             on_phase=crash_at(1, "asked"))
    with pytest.raises(Crash):
        b1.run()
    b1.close()  # the pool's worker processes die with a crashed engine
    del b1
    states = history(db, "b")
    assert [s["told"] for s in states] == [True, False] and states[1]["phase"] == "asked"
    with db.session_scope(readonly=True) as s:
        assert store.resolve_run(s, "b").status is RunStatus.RUNNING  # nobody said otherwise

    # a fresh engine crashes again after training generation 1 ...
    b2 = SearchEngine.open(db, artifacts, "b", force=True, on_phase=crash_at(1, "trained"))
    with pytest.raises(Crash):
        b2.run()
    b2.close()
    new_in_gen1 = set(states[1]["genome_ids"]) - set(states[0]["genome_ids"])
    assert b2.trained <= len(new_in_gen1)  # generation 0 was replayed, not retrained
    # ... and the next one finishes without training anything again
    b3 = SearchEngine.open(db, artifacts, "b", force=True)
    assert b3.run() is RunStatus.DONE
    assert b3.trained == 0

    ha, hb = history(db, "a"), history(db, "b")
    assert [s["genome_ids"] for s in ha] == [s["genome_ids"] for s in hb]
    assert [s["F"] for s in ha] == [s["F"] for s in hb]  # exact floats
    assert [s["G"] for s in ha] == [s["G"] for s in hb]
    assert all(s["told"] and s["phase"] == "told" for s in hb)
    assert frontier(db, "a") == frontier(db, "b") != []
    with db.session_scope(readonly=True) as s:
        run_b = store.resolve_run(s, "b")
        assert run_b.status is RunStatus.DONE
        cands = repo.list_candidates(s, run_id=run_b.id)
    # one candidate per distinct genome; quality trained once each, params from the cost model
    assert len(cands) == len({g for st in hb for g in st["genome_ids"]})
    for c in cands:
        pre = c.analytic_costs["prescreen"]
        assert pre["ok"] is (c.proxy_metrics is not None)
        if c.proxy_metrics is not None:
            assert c.proxy_metrics["error"] is None and 0 < c.proxy_metrics["quality"] < 2


def test_stop_flag_stops_between_phases_and_resume_matches(any_db: Database,
                                                           artifacts: ArtifactStore) -> None:
    db = any_db
    SearchEngine.create(db, artifacts, search_config(name="ref")).run()

    def request_stop(index: int, phase: str) -> None:
        if (index, phase) == (1, "prescreened"):
            with db.session_scope() as s:
                lifecycle.request_stop(s, run_id=engine.run_id)

    engine = SearchEngine.create(db, artifacts, search_config(name="stopped"),
                                 on_phase=request_stop)
    assert engine.run() is RunStatus.STOPPED
    with db.session_scope(readonly=True) as s:
        snap = store.resolve_run(s, "stopped")
    assert snap.status is RunStatus.STOPPED and snap.stop_requested is True
    # an engine that is not a user's resume (a coordinator adopting it) obeys the stop
    assert SearchEngine.open(db, artifacts, "stopped", resume=False).run() is RunStatus.STOPPED
    assert [s["phase"] for s in history(db, "stopped")] == ["told", "prescreened"]
    assert [s["phase"] for s in history(db, "stopped")] == ["told", "prescreened"]
    assert SearchEngine.open(db, artifacts, "stopped").run() is RunStatus.DONE
    ref, stopped = history(db, "ref"), history(db, "stopped")
    assert [(s["genome_ids"], s["F"], s["G"]) for s in ref] == [
        (s["genome_ids"], s["F"], s["G"]) for s in stopped]
    assert frontier(db, "ref") == frontier(db, "stopped")


def test_replay_refuses_a_different_history(any_db: Database, artifacts: ArtifactStore) -> None:
    db = any_db
    engine = SearchEngine.create(db, artifacts, search_config(name="r", generations=3))
    assert engine.run(max_generations=1) is RunStatus.STOPPED
    assert engine.run(max_generations=1) is RunStatus.STOPPED  # the same engine goes on
    assert engine.next_index == 2
    with db.session_scope() as s:
        run = repo.get_run_by_name(s, "r")
        gen0 = repo.list_generations(s, run.id)[0]
        ids = list(reversed(gen0.state["genome_ids"]))
        store.update_generation(s, generation_id=gen0.id, genome_ids=ids)
    with pytest.raises(ReplayMismatch, match="generation 0: replay asked other genomes"):
        SearchEngine.open(db, artifacts, "r").run()
    with db.session_scope(readonly=True) as s:
        snap = store.resolve_run(s, "r")
    assert snap.status is RunStatus.FAILED and "ReplayMismatch" in (snap.status_reason or "")


def test_a_running_run_is_not_resumed_twice(db: Database, artifacts: ArtifactStore) -> None:
    from star.search.engine import SearchError

    engine = SearchEngine.create(db, artifacts, search_config(name="busy"),
                                 on_phase=crash_at(0, "asked"))
    with pytest.raises(Crash):
        engine.run()
    with pytest.raises(SearchError, match="is running"):
        SearchEngine.open(db, artifacts, "busy")
    assert SearchEngine.open(db, artifacts, "busy", force=True).run() is RunStatus.DONE
