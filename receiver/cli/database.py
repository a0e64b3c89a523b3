"""The database a command opens: RECEIVER_DATABASE_URL's, or the embedded server in the
data folder; migrated, and refused when its schema is newer than this release's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from receiver.db import migrate
from receiver.db.embedded import embedded_database_url, start_embedded
from receiver.db.engine import (
    UNAVAILABLE_OR_REFUSED,
    asyncpg_dsn,
    describe,
)
from receiver.settings import Settings

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer


@dataclass(frozen=True, slots=True)
class Database:
    """The database the service will use, and the embedded server behind it if any."""

    url: str
    server: PostgresServer | None = None

    @property
    def embedded(self) -> bool:
        return self.server is not None


def open_database(settings: Settings) -> Database:
    """RECEIVER_DATABASE_URL when set; otherwise the embedded server in the data folder."""
    if settings.database_url is not None:
        return Database(url=settings.database_url)
    server = start_embedded(settings.data_dir)
    return Database(url=embedded_database_url(server), server=server)


# Seconds a command waits for the database to answer before saying it cannot reach it.
CONNECT_TIMEOUT = 10


class DatabaseNotReady(Exception):
    """A command's database cannot be used: unreachable, or not at this code's schema."""


def open_migrated_database(settings: Settings) -> Database:
    """`open_database` for a command that reads or writes the tables.

    The embedded database is brought to the latest schema, as `serve` does; an
    external one must already be there (`receiver migrate` is never implicit for
    it). Raises `DatabaseNotReady`, saying what to do, when it cannot be used.
    """
    database = open_database(settings)
    head = migrate.head_revision()
    revision = asyncio.run(_schema_revision(database.url))
    if revision == head:
        return database
    if revision is not None:
        _refuse_newer(database.url, revision)
    if database.embedded:
        migrate.upgrade(database.url)
        return database
    where = describe(database.url)
    if revision is None:
        raise DatabaseNotReady(f"the database {where} has no schema: run `receiver migrate`")
    raise DatabaseNotReady(
        f"the database {where} is at schema revision {revision}, this receiver needs {head}:"
        " run `receiver migrate`"
    )


def upgrade(url: str) -> None:
    """Bring the schema to this code's head; refuses a schema a newer release made."""
    revision = asyncio.run(_schema_revision(url))
    if revision is not None:
        _refuse_newer(url, revision)
    migrate.upgrade(url)


def _refuse_newer(url: str, revision: str) -> None:
    if not migrate.known(revision):
        raise DatabaseNotReady(
            f"the database {describe(url)} is at schema revision {revision}, which this"
            f" receiver ({migrate.head_revision()}) does not know: a newer release migrated"
            " it; run that release"
        )


async def _schema_revision(url: str) -> str | None:
    """The database's alembic revision; None when it has no schema."""
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=CONNECT_TIMEOUT)
    except UNAVAILABLE_OR_REFUSED as error:
        raise DatabaseNotReady(
            f"cannot reach the database {describe(url)}: {str(error) or type(error).__name__}"
        ) from None
    try:
        revision: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
    except asyncpg.exceptions.UndefinedTableError:
        return None
    finally:
        await conn.close()
    return revision
