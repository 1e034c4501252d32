"""Alembic, driven from code: ``star db upgrade`` / ``star db current`` and the start-up check.

The migration scripts live inside the package (``star/db/migrations``), so an installed lab has
them; there is no alembic.ini. ``require_current_schema`` is what the coordinator calls at
start-up: an out-of-date (or empty) database is refused with the command that fixes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from star.db.session import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
UPGRADE_HINT = "star db upgrade"


class SchemaOutOfDateError(RuntimeError):
    """The database is not at the revision this code expects."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migration_connection(db: Database) -> Iterator[Connection]:
    """A connection in one transaction; on SQLite with foreign keys off meanwhile, because a
    batch migration rebuilds tables (the pragma cannot change inside a transaction)."""
    with db.engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with connection.begin():
                yield connection
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def upgrade(db: Database, revision: str = "head") -> str | None:
    """Migrate ``db`` to ``revision`` (default: the newest); returns the revision reached."""
    config = alembic_config()
    with _migration_connection(db) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return current_revision(db.engine)


def downgrade(db: Database, revision: str) -> str | None:
    config = alembic_config()
    with _migration_connection(db) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
    return current_revision(db.engine)


def require_current_schema(engine: Engine) -> str:
    """Return the head revision, or raise ``SchemaOutOfDateError`` naming ``star db upgrade``."""
    head = head_revision()
    current = current_revision(engine)
    if current != head:
        where = "has no schema" if current is None else f"is at schema revision {current}"
        raise SchemaOutOfDateError(
            f"the database {engine.url.render_as_string(hide_password=True)} {where}; "
            f"this code needs revision {head}: run `{UPGRADE_HINT}` first"
        )
    return head
