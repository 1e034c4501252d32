"""A search run's lifecycle: the only code that writes ``runs.status``, ``owner``, ``driver``,
``heartbeat_at``, ``stop_requested`` and ``status_reason``. Everyone else asks it.

Who drives a run is its *owner* (``engine_identity()``: ``host:pid:nonce``) with a *driver*
(``cli``: a user's ``star search run|resume``; ``coordinator``: an engine thread of a
coordinator, launched over REST). Heartbeats are stamped with the database clock. The rules:

- ``start`` makes the caller the owner (status running); a user's stop request survives it (only
  ``resume``, a user's explicit "continue", clears it), so a stop asked while no engine listened
  is obeyed by the next one;
- ``heartbeat`` stamps the owner's heartbeat and tells it whether to stop: a stop was requested,
  or another engine owns the run now (it was adopted while this one was silent);
- ``finish`` records running -> done / failed / stopped / suspended, only while the caller still
  owns the run (an engine that lost its run never writes over the new owner's status);
- ``orphaned`` and ``claim`` decide adoption by coordinators: a coordinator-driven run that is
  suspended (its coordinator shut down), or running while its engine is silent for too long (or,
  on this host, its process is gone), and that nobody asked to stop; ``claim`` checks again under
  the row lock, so two coordinators never both win. A running orphan whose stop was requested is
  ``settle``-d as stopped instead of adopted.

Every read-modify-write locks the run's row first (``FOR UPDATE`` on PostgreSQL; SQLite
transactions here are ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from star.db.errors import NotFoundError
from star.db.models import Run, RunStatus
from star.db.session import db_now
from star.db.snapshots import RunSnapshot

COORDINATOR = "coordinator"
CLI = "cli"
SHUTDOWN = "coordinator shut down"


def engine_identity() -> str:
    """``host:pid:nonce``: who drives a run. The host and pid let a coordinator on the same host
    see at once that a crashed owner is gone."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str | None) -> bool:
    """True only when ``owner`` ran on this host and its process no longer exists."""
    if not owner or owner.count(":") < 2:
        return False
    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _locked(session: Session, run_id: int) -> Run:
    row = session.scalars(select(Run).where(Run.id == run_id).with_for_update()).one_or_none()
    if row is None:
        raise NotFoundError(f"no run with id {run_id}")
    return row


@dataclass(frozen=True)
class Beat:
    """What an engine's heartbeat learned: a stop was requested, or another engine owns the
    run now (it adopted it while this one was silent)."""

    stop_requested: bool
    taken_over_by: str | None = None

    def reason(self) -> str | None:
        """Why the engine must stop, if it must."""
        if self.taken_over_by is not None:
            return f"run taken over by engine {self.taken_over_by}"
        return "stop requested" if self.stop_requested else None


def begin(session: Session, *, run_id: int, owner: str | None, driver: str) -> RunSnapshot:
    """A new run: running, owned by its creator, no stop requested."""
    row = _locked(session, run_id)
    row.status, row.status_reason = RunStatus.RUNNING.value, None
    row.owner, row.driver, row.stop_requested = owner, driver, False
    row.heartbeat_at = db_now(session)
    session.flush()
    return RunSnapshot.of(row)


def start(session: Session, *, run_id: int, owner: str, driver: str) -> RunSnapshot:
    """The caller's engine drives the run from now on (see the module doc)."""
    row = _locked(session, run_id)
    row.status, row.status_reason = RunStatus.RUNNING.value, None
    row.owner, row.driver = owner, driver
    row.heartbeat_at = db_now(session)
    session.flush()
    return RunSnapshot.of(row)


def heartbeat(session: Session, *, run_id: int, owner: str | None = None) -> Beat:
    """Stamp the owner's heartbeat (database clock), unless ``owner`` no longer owns the run."""
    row = _locked(session, run_id)
    if owner is not None and row.owner is not None and row.owner != owner:
        return Beat(bool(row.stop_requested), taken_over_by=row.owner)
    row.heartbeat_at = db_now(session)
    session.flush()
    return Beat(bool(row.stop_requested))


def finish(session: Session, *, run_id: int, status: RunStatus, reason: str | None = None,
           owner: str | None = None) -> RunSnapshot | None:
    """Record how the engine left the run; with ``owner``, only while it still owns it (None
    is returned, nothing written, once another engine took it over)."""
    row = _locked(session, run_id)
    if owner is not None and row.owner not in (None, owner):
        return None
    row.status, row.status_reason = RunStatus(status).value, reason
    row.heartbeat_at = db_now(session)
    session.flush()
    return RunSnapshot.of(row)


def request_stop(session: Session, *, run_id: int) -> RunSnapshot:
    """A user asks the run's engine, wherever it runs, to stop at its next phase boundary."""
    row = _locked(session, run_id)
    row.stop_requested = True
    session.flush()
    return RunSnapshot.of(row)


def resume(session: Session, *, run_id: int) -> RunSnapshot:
    """A user asks to continue the run: an earlier stop request no longer applies."""
    row = _locked(session, run_id)
    row.stop_requested = False
    session.flush()
    return RunSnapshot.of(row)


def heard_within(run: RunSnapshot, now: datetime, seconds: float) -> float | None:
    """Seconds since a running run's engine was heard from, if less than ``seconds``."""
    if run.status is not RunStatus.RUNNING or run.heartbeat_at is None:
        return None
    age = (now.replace(tzinfo=None) - run.heartbeat_at.replace(tzinfo=None)).total_seconds()
    return age if age < seconds else None


def _silent(run: RunSnapshot, now: datetime, stale_after_s: float) -> bool:
    """Running, and its engine is gone: its process is dead (this host) or it is silent."""
    if run.status is not RunStatus.RUNNING:
        return False
    return owner_is_dead(run.owner) or heard_within(run, now, stale_after_s) is None


def orphaned(run: RunSnapshot, now: datetime, stale_after_s: float) -> bool:
    """A coordinator-driven search run that nobody drives and nobody asked to stop."""
    if "search" not in (run.config or {}) or run.driver != COORDINATOR or run.status is None:
        return False
    if run.stop_requested:
        return False
    return run.status.is_adoptable() or _silent(run, now, stale_after_s)


def settle(session: Session, *, run_id: int, stale_after_s: float) -> RunSnapshot | None:
    """A coordinator-driven run whose engine is gone while a stop was requested is stopped,
    not adopted (the stop is never lost). Returns the run if it was settled."""
    row = _locked(session, run_id)
    run = RunSnapshot.of(row)
    if not (run.driver == COORDINATOR and run.stop_requested
            and _silent(run, db_now(session), stale_after_s)):
        return None
    row.status, row.status_reason = RunStatus.STOPPED.value, "stop requested (its engine was gone)"
    session.flush()
    return RunSnapshot.of(row)


def claim(session: Session, *, run_id: int, owner: str, stale_after_s: float,
          resume_by_user: bool = False) -> bool:
    """Take the run over for ``owner`` (a coordinator engine) if it is still orphaned - or,
    for a user's resume, resumable - checked under the row lock, so one claimant wins. The
    claim is a fresh heartbeat, the owner's mark and status running."""
    row = _locked(session, run_id)
    run = RunSnapshot.of(row)
    now = db_now(session)
    if resume_by_user:
        ok = "search" in (run.config or {}) and run.status is not None and (
            run.status.is_resumable() or _silent(run, now, stale_after_s))
    else:
        ok = orphaned(run, now, stale_after_s)
    if not ok:
        return False
    row.owner, row.driver = owner, COORDINATOR
    row.status, row.status_reason = RunStatus.RUNNING.value, None
    row.heartbeat_at = now
    if resume_by_user:
        row.stop_requested = False
    session.flush()
    return True
