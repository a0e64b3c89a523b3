"""Alembic environment: async engine over asyncpg, one migrator at a time."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from receiver.db.engine import sqlalchemy_url
from receiver.db.migrate import oldest_code
from receiver.db.models import Base

# Any constant works; it only has to be the same for every receiver process.
MIGRATION_LOCK_KEY = 0x52454345  # "RECE"


def _database_url() -> str:
    url = context.config.attributes.get("database_url") or os.environ.get("RECEIVER_DATABASE_URL")
    if not url:
        raise RuntimeError("no database: set RECEIVER_DATABASE_URL")
    return sqlalchemy_url(url)


def _run(connection: Connection) -> None:
    # Several receivers may start `migrate` at once (replicas, a Job that retries):
    # the lock makes the second wait and then find nothing to do.
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
            _record_compatibility(connection)
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


def _record_compatibility(connection: Connection) -> None:
    """Record the oldest code that runs on the schema this run left (receiver.db.migrate's
    `Schema` reads it), once the table for it exists."""
    revision = context.get_context().get_current_revision()
    if (
        revision is None
        or connection.scalar(text("SELECT to_regclass('schema_compatibility')")) is None
    ):
        return
    connection.execute(
        text(
            "INSERT INTO schema_compatibility (revision, oldest_code) VALUES (:revision, :oldest)"
            " ON CONFLICT (revision) DO UPDATE SET oldest_code = EXCLUDED.oldest_code,"
            " migrated_at = now()"
        ),
        {"revision": revision, "oldest": oldest_code(context.script, revision)},
    )


async def _run_online() -> None:
    engine = create_async_engine(_database_url(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
