"""Engines and ``session_scope()``: the one way to touch the database.

No engine is created at import time. ``Database(url)`` owns an engine and a session factory;
``with db.session_scope() as s:`` commits on success, rolls back on error, and always closes.

SQLite is tuned for a coordinator serving many agents: WAL (readers never block the writer), a
busy timeout (writers queue instead of failing), foreign keys on, and every transaction opened
with ``BEGIN IMMEDIATE`` so that a read-then-write transaction never fails half way with
SQLITE_BUSY when another writer committed in between (the deferred-BEGIN trap).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs (SQLAlchemy's default driver is psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, immediate: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite files get their directory created and the pragmas above.

    ``immediate=False`` (SQLite only) opens deferred transactions: for read-only sessions, which
    then never wait for the writer (WAL)."""
    url = normalise_url(url)
    if not _is_sqlite(url):
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 30)
        kwargs.setdefault("pool_recycle", 1800)  # not pre_ping: a round trip per checkout
        return create_engine(url, **kwargs)
    database = make_url(url).database
    memory = database in (None, "", ":memory:")
    if database and not memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    if not memory:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 30)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if not immediate:

        @event.listens_for(engine, "begin")
        def _on_begin_deferred(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN")

        return engine

    # Writers of this process queue on a lock before BEGIN IMMEDIATE: a lock hands over at once,
    # while SQLite's busy handler polls with sleeps of up to 100 ms (a p99 of hundreds of ms
    # under load). Other processes are still serialised by SQLite itself (busy timeout).
    writer = threading.Lock()

    def _release(connection: Any) -> None:
        if connection.info.pop("star_writer", False):
            writer.release()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise TimeoutError("the SQLite writer lock was not free within the busy timeout")
        connection.info["star_writer"] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(connection)
            raise

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)

    return engine


class Database:
    """An engine plus its session factory; pass one of these around, never a global."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._read_engine = self.engine
        if self.engine.dialect.name == "sqlite" and make_url(self.url).database not in (
            None,
            "",
            ":memory:",
        ):
            self._read_engine = make_engine(self.url, immediate=False, **engine_kwargs)
        self._read_sessions = sessionmaker(
            self._read_engine, expire_on_commit=False, autoflush=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session_scope(self, *, readonly: bool = False) -> Iterator[Session]:
        """A transaction: commit on success, roll back on any exception, always close.

        ``readonly`` sessions on SQLite open a deferred transaction (no writer lock)."""
        session = (self._read_sessions if readonly else self._sessions)()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
        self._read_engine.dispose()


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE: the compare-and-set's verdict."""
    return cast("CursorResult[Any]", result).rowcount


def db_now(session: Session) -> datetime:
    """The database clock, as naive UTC with sub-second resolution.

    Leases and heartbeats are stamped with this, never with the caller's clock, so that agents
    and several coordinator processes agree on who holds what.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        raw = session.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
        return datetime.fromisoformat(raw)
    if dialect == "postgresql":
        return session.execute(text("SELECT clock_timestamp() AT TIME ZONE 'UTC'")).scalar_one()
    return datetime.now(UTC).replace(tzinfo=None)
