"""Search engines driven by a coordinator process: launch, stop at shutdown, adopt orphans.

A run launched through the REST API (``POST /runs``, ``POST /runs/{id}/resume``) is driven by an
engine thread of a coordinator (``runs.driver == "coordinator"``). Such a run must outlive the
process that drives it, so ``EngineSupervisor``:

- on shutdown asks its engines to stop at their next phase boundary (the run is then
  ``suspended``) and waits a bounded time; an engine still busy then dies with the process and
  its heartbeat goes stale;
- every ``adopt_interval_s`` (and once at start) adopts the coordinator-driven runs nobody
  drives (``star.db.repo.lifecycle.orphaned``: suspended, or still ``running`` while their
  engine is silent for ``stale_after_s`` or, on this host, its process is gone: a ``kill -9``
  is noticed at once), unless a stop was requested: such a run is stopped instead, so a stop
  is never lost. Adoption is a claim under the run's row lock, so two coordinators on one
  database never both drive a run; the new engine replays the told generations and continues
  the open one.

Runs driven from the CLI (``star search run|resume``) are never adopted: their user resumes them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from star.db import Database, repo
from star.db.models import RunStatus
from star.db.repo import lifecycle
from star.db.repo.lifecycle import COORDINATOR as DRIVER
from star.db.repo.lifecycle import SHUTDOWN as SHUTDOWN
from star.db.session import db_now
from star.db.snapshots import RunSnapshot
from star.db.store import ArtifactStore

log = logging.getLogger(__name__)



class EngineSupervisor:
    """The engine threads of one coordinator process (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        *,
        stale_after_s: float = 120.0,
        adopt_interval_s: float = 10.0,
        heartbeat_s: float = 10.0,
        shutdown_timeout_s: float = 15.0,
        engine_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.stale_after_s = stale_after_s
        self.adopt_interval_s = adopt_interval_s
        self.heartbeat_s = heartbeat_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._engine_factory = engine_factory  # tests: SearchEngine.open with extra arguments
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._adopter: threading.Thread | None = None
        self.sweeps = 0  # adoption sweeps done (tests wait on it instead of sleeping)

    # ---- engines ------------------------------------------------------------------------------

    def engine_kwargs(self) -> dict[str, Any]:
        """What every engine of this process is built with."""
        return {"driver": DRIVER, "should_stop": self._stop_reason,
                "heartbeat_s": self.heartbeat_s}

    def _stop_reason(self) -> str | None:
        return SHUTDOWN if self._stopping.is_set() else None

    def is_driving(self, run_id: int) -> bool:
        with self._lock:
            thread = self._threads.get(run_id)
            return thread is not None and thread.is_alive()

    def driving(self) -> list[int]:
        with self._lock:
            return sorted(r for r, t in self._threads.items() if t.is_alive())

    def launch(self, engine: Any) -> bool:
        """Run ``engine`` in a thread of this process; False if this process drives it already
        or is shutting down."""
        with self._lock:
            if self._stopping.is_set():
                return False
            current = self._threads.get(engine.run_id)
            if current is not None and current.is_alive():
                return False
            thread = threading.Thread(target=self._drive, args=(engine,), daemon=True,
                                      name=f"search-{engine.run_id}")
            self._threads[engine.run_id] = thread
        thread.start()
        return True

    def _drive(self, engine: Any) -> None:
        try:
            engine.run()
        except Exception:  # noqa: BLE001 - the engine stores "failed" itself
            log.exception("search run %s: engine stopped with an error", engine.run_name)
        finally:
            with self._lock:
                if self._threads.get(engine.run_id) is threading.current_thread():
                    del self._threads[engine.run_id]

    def open_engine(self, run_id: int, *, force: bool = True, resume: bool = False) -> Any:
        """The engine of a stored run, for this process. ``resume``: a user asked for it (an
        earlier stop request is cleared); adoption never clears one."""
        from star.search.engine import SearchEngine

        if self._engine_factory is not None:
            return self._engine_factory(self.db, self.artifacts, run_id, force=force,
                                        resume=resume, **self.engine_kwargs())
        return SearchEngine.open(self.db, self.artifacts, run_id, force=force, resume=resume,
                                 stale_after_s=self.stale_after_s, **self.engine_kwargs())

    # ---- adoption -----------------------------------------------------------------------------

    def orphaned(self, run: RunSnapshot, now: datetime) -> bool:
        """Whether ``run`` is coordinator-driven, driven by nobody and not asked to stop."""
        return lifecycle.orphaned(run, now, self.stale_after_s)

    def claim(self, run_id: int, owner: str, *, resume: bool = False) -> bool:
        """Take ``run_id`` over for ``owner`` if it is still orphaned - or, with ``resume`` (a
        user's request), resumable - checked again under the row lock, so one claimant wins."""
        with self.db.session_scope() as s:
            return lifecycle.claim(s, run_id=run_id, owner=owner,
                                   stale_after_s=self.stale_after_s, resume_by_user=resume)

    def adopt_once(self) -> list[int]:
        """Adopt every orphaned coordinator-driven run; returns the run ids now driven here.
        A run whose engine is gone while a stop was requested is settled as stopped."""
        if self._stopping.is_set():
            return []
        with self.db.session_scope(readonly=True) as s:
            now = db_now(s)
            runs = repo.list_runs(s)
        adopted: list[int] = []
        for run in runs:
            if self.is_driving(run.id):
                continue
            if run.stop_requested and run.driver == DRIVER:
                with self.db.session_scope() as s:
                    if lifecycle.settle(s, run_id=run.id, stale_after_s=self.stale_after_s):
                        log.warning("run %s: its engine is gone and a stop was requested: "
                                    "stopped", run.name)
                continue
            if not self.orphaned(run, now):
                continue
            try:
                engine = self.open_engine(run.id)  # no side effect before run()
            except Exception as exc:  # noqa: BLE001 - keep the others going; reason stored
                log.exception("run %s: cannot adopt", run.id)
                if self.claim(run.id, f"failed-adoption:{id(self)}"):
                    self._give_up(run.id, f"adoption failed: {type(exc).__name__}: {exc}")
                continue
            if self.claim(run.id, engine.owner) and self.launch(engine):
                log.warning("run %s: adopted (its engine was gone)", engine.run_name)
                adopted.append(run.id)
        return adopted

    def _give_up(self, run_id: int, reason: str) -> None:
        with self.db.session_scope() as s:
            lifecycle.finish(s, run_id=run_id, status=RunStatus.FAILED, reason=reason[:2000])

    def _adopt_loop(self) -> None:
        while True:
            try:
                self.adopt_once()
            except Exception:  # noqa: BLE001 - the database may be briefly away; try again
                log.exception("adopting orphaned runs failed")
            self.sweeps += 1
            if self._stopping.wait(self.adopt_interval_s):
                return

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Adopt orphaned runs now and every ``adopt_interval_s``."""
        self._adopter = threading.Thread(target=self._adopt_loop, daemon=True,
                                         name="search-adopter")
        self._adopter.start()

    def stop(self) -> None:
        """Ask every engine to stop at its next phase boundary; wait up to
        ``shutdown_timeout_s`` in all (an engine still busy then dies with the process)."""
        import time

        self._stopping.set()
        deadline = time.monotonic() + self.shutdown_timeout_s
        if self._adopter is not None:
            self._adopter.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        busy = [t.name for t in threads if t.is_alive()]
        if busy:
            log.warning("engines still busy at shutdown (adopted later by a coordinator): %s",
                        busy)
