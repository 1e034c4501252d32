"""The lab database: SQLAlchemy 2 models, ``Database.session_scope()``, Alembic migrations and
repository functions that return frozen snapshots.

    db = Database(settings.db_url)
    with db.session_scope() as s:
        job = repo.create_profile_job(s, artifact_id=..., contexts=[512], repetitions=3, ...)
"""

from star.db.migrate import SchemaOutOfDateError, require_current_schema, upgrade
from star.db.models import DeviceStatus, JobState
from star.db.session import Database, db_now

__all__ = [
    "Database",
    "DeviceStatus",
    "JobState",
    "SchemaOutOfDateError",
    "db_now",
    "require_current_schema",
    "upgrade",
]
