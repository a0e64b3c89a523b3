"""The database a command opens: RECEIVER_DATABASE_URL's, or the embedded server in the
data folder; migrated, and refused when its schema is newer than this release's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
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
    """The database the service will use, and the embedded server behind it if any.

    `url` is where the service's pools connect (a pooler, when `direct` is given);
    `session`, where a connection that keeps a session goes: a command's own, LISTEN,
    the migration and its lock.
    """

    url: str
    server: PostgresServer | None = None
    direct: str | None = None

    @property
    def embedded(self) -> bool:
        return self.server is not None

    @property
    def session(self) -> str:
        return self.direct or self.url


def open_database(settings: Settings) -> Database:
    """RECEIVER_DATABASE_URL when set; otherwise the embedded server in the data folder."""
    if settings.database_url is not None:
        return Database(url=settings.database_url, direct=settings.direct_database_url)
    server = start_embedded(settings.data_dir)
    return Database(url=embedded_database_url(server), server=server)


# Seconds a command waits for the database to answer before saying it cannot reach it.
CONNECT_TIMEOUT = 10


class DatabaseNotReady(Exception):
    """A command's database cannot be used: unreachable, or not at this code's schema."""


def open_migrated_database(settings: Settings) -> Database:
    """`open_database` for a command that reads or writes the tables.

    The embedded database is brought to the latest schema, as `serve` does; an
    external one must already be at a schema this code runs on (`receiver migrate`
    is never implicit for it). Raises `DatabaseNotReady`, saying what to do, when it
    cannot be used.
    """
    database = open_database(settings)
    schema = asyncio.run(_schema(database.session))
    if schema.compatible:
        return database
    if database.embedded and not schema.newer:
        migrate.upgrade(database.url)
        return database
    raise DatabaseNotReady(_refusal(database.session, schema))


def upgrade(url: str) -> str:
    """Bring the schema to this code's head, and say the revision it is at. A newer
    release's schema is left as it is: nothing to do when this code runs on it,
    refused when it does not."""
    schema = asyncio.run(_schema(url))
    if schema.newer:
        if not schema.compatible:
            raise DatabaseNotReady(_refusal(url, schema))
        assert schema.revision is not None  # a newer one is one
        return schema.revision
    migrate.upgrade(url)
    return schema.head


def _refusal(url: str, schema: migrate.Schema) -> str:
    return f"the database {describe(url)} {schema.problem(who='this receiver')}"


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """A connection of a command's own to `url`; `DatabaseNotReady`, saying which
    database, when it cannot be reached within CONNECT_TIMEOUT."""
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=CONNECT_TIMEOUT)
    except UNAVAILABLE_OR_REFUSED as error:
        raise DatabaseNotReady(
            f"cannot reach the database {describe(url)}: {str(error) or type(error).__name__}"
        ) from None
    try:
        yield conn
    finally:
        await conn.close()


async def _schema(url: str) -> migrate.Schema:
    """The database's schema beside this code's."""
    async with connected(url) as conn:
        return await migrate.read_schema(conn)
