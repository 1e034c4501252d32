"""The periodic reaper: requeues (or fails) jobs whose lease expired. It also runs on every lease
call; this thread covers quiet periods, so that a dead agent's job is requeued on time."""

from __future__ import annotations

import logging
import threading

from star.db import Database, repo

log = logging.getLogger(__name__)


class Reaper:
    def __init__(self, db: Database, interval_s: float) -> None:
        self._db = db
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="star-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def sweep(self) -> list[int]:
        with self._db.session_scope() as session:
            reaped = repo.reap_expired(session)
        if reaped:
            log.info("reaper: requeued or failed jobs %s", reaped)
        return reaped

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sweep()
            except Exception:  # a database hiccup must not kill the reaper
                log.exception("reaper sweep failed")
