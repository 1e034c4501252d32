"""Search engines driven by a coordinator process: launch, stop at shutdown, adopt orphans.

A run launched through the REST API (``POST /runs``, ``POST /runs/{id}/resume``) is driven by an
engine thread of a coordinator (``Run.config["engine"]["driver"] == "coordinator"``). Such a run
must outlive the process that drives it, so ``EngineSupervisor``:

- on shutdown asks its engines to stop at their next phase boundary (``SHUTDOWN`` is the
  recorded reason) and waits a bounded time; an engine still busy then dies with the process
  and its heartbeat goes stale;
- every ``adopt_interval_s`` (and once at start) adopts the coordinator-driven runs nobody
  drives: stopped for ``SHUTDOWN``, or still ``running`` while their engine is silent for
  ``stale_after_s`` (or, on this host, its process is gone: a ``kill -9`` is noticed at once).
  Adoption is a claim under the run's row lock, so two coordinators on one database never
  both drive a run; the new engine replays the told generations and continues the open one.

Runs driven from the CLI (``star search run|resume``) are never adopted: their user resumes them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from star.db import Database
from star.db.models import Run
from star.db.session import db_now
from star.db.store import ArtifactStore

log = logging.getLogger(__name__)

SHUTDOWN = "coordinator shut down"
DRIVER = "coordinator"


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

    def open_engine(self, run_id: int, *, force: bool = True) -> Any:
        from star.search.engine import SearchEngine

        if self._engine_factory is not None:
            return self._engine_factory(self.db, self.artifacts, run_id, force=force,
                                        **self.engine_kwargs())
        return SearchEngine.open(self.db, self.artifacts, run_id, force=force,
                                 stale_after_s=self.stale_after_s, **self.engine_kwargs())

    # ---- adoption -----------------------------------------------------------------------------

    def orphaned(self, config: dict[str, Any], now: datetime) -> bool:
        """Whether a run with this ``Run.config`` is coordinator-driven and driven by nobody."""
        from star.search.store import owner_is_dead

        engine = config.get("engine") or {}
        if "search" not in config or engine.get("driver") != DRIVER:
            return False
        status = config.get("status")
        if status == "stopped":
            return config.get("status_reason") == SHUTDOWN and not config.get("stop_requested")
        if status != "running":
            return False
        if owner_is_dead(engine.get("owner")):
            return True
        beat = config.get("heartbeat_at")
        if beat is None:
            return True
        return (now - datetime.fromisoformat(beat)).total_seconds() >= self.stale_after_s

    def claim(self, run_id: int, owner: str, *, resume: bool = False) -> bool:
        """Take ``run_id`` over for ``owner`` if it is still orphaned - or, with ``resume``,
        stopped or failed - checked again under the row lock, so one claimant wins; the claim
        is a fresh heartbeat and the owner's mark."""
        import copy

        with self.db.session_scope() as s:
            row = s.scalars(select(Run).where(Run.id == run_id).with_for_update()).one_or_none()
            if row is None:
                return False
            config = copy.deepcopy(dict(row.config or {}))
            now = db_now(s)
            resumable = resume and "search" in config and config.get("status") in (
                "stopped", "failed")
            if not (resumable or self.orphaned(config, now)):
                return False
            previous = (config.get("engine") or {}).get("owner")
            config["engine"] = {"owner": owner, "driver": DRIVER, "adopted_from": previous}
            config["heartbeat_at"] = now.isoformat()
            config["status"] = "running"
            row.config = config
            s.flush()
        return True

    def adopt_once(self) -> list[int]:
        """Adopt every orphaned coordinator-driven run; returns the run ids now driven here."""
        if self._stopping.is_set():
            return []
        with self.db.session_scope(readonly=True) as s:
            now = db_now(s)
            rows = [(r.id, dict(r.config or {})) for r in s.scalars(select(Run))]
        adopted: list[int] = []
        for run_id, config in rows:
            if self.is_driving(run_id) or not self.orphaned(config, now):
                continue
            try:
                engine = self.open_engine(run_id)  # no side effect before run()
            except Exception as exc:  # noqa: BLE001 - keep the others going; reason stored
                log.exception("run %s: cannot adopt", run_id)
                if self.claim(run_id, f"failed-adoption:{id(self)}"):
                    self._give_up(run_id, f"adoption failed: {type(exc).__name__}: {exc}")
                continue
            if self.claim(run_id, engine.owner) and self.launch(engine):
                log.warning("run %s: adopted (its engine was gone)", engine.run_name)
                adopted.append(run_id)
        return adopted

    def _give_up(self, run_id: int, reason: str) -> None:
        from star.search import store
        from star.search.store import RunStatus

        with self.db.session_scope() as s:
            store.set_status(s, run_id=run_id, status=RunStatus.FAILED, reason=reason[:2000])

    def _adopt_loop(self) -> None:
        while True:
            try:
                self.adopt_once()
            except Exception:  # noqa: BLE001 - the database may be briefly away; try again
                log.exception("adopting orphaned runs failed")
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
