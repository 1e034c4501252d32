"""Alembic environment, driven programmatically by ``star.db.migrate`` (no alembic.ini).

The caller passes an open connection in ``config.attributes["connection"]`` so that migrations
run through the same engine set-up (SQLite pragmas, psycopg 3) as the application.
"""

from __future__ import annotations

from alembic import context

from star.db.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through star.db.migrate
    raise RuntimeError("run migrations through star.db.migrate (star db upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
