"""Connections to PostgreSQL: the asyncpg pool the service runs on, and URL helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from sqlalchemy.engine import make_url

# The database boundary's types (asyncpg-stubs): a connection of its own or one lent
# by a pool, and a pool, both of asyncpg's records. Generic only to the type checker.
if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
else:
    Connection = asyncpg.Connection
    Pool = asyncpg.Pool
Record: TypeAlias = asyncpg.Record

# Errors that say "the database is away", as opposed to "this data is wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.InternalServerError,
)

# The database away, or refusing what was asked (not migrated, a statement cancelled):
# what a loop that must go on catches around its statements.
UNAVAILABLE_OR_REFUSED: tuple[type[BaseException], ...] = (
    *UNAVAILABLE_ERRORS,
    asyncpg.PostgresError,
)
# Away, or not migrated yet.
UNAVAILABLE_OR_UNMIGRATED: tuple[type[BaseException], ...] = (
    *UNAVAILABLE_ERRORS,
    asyncpg.UndefinedTableError,
)

# Errors that say "the same transaction, run again, may succeed": it met another, and
# PostgreSQL chose it to give way. Run again at once, up to TRANSACTION_TRIES times.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
TRANSACTION_TRIES = 3


async def one_row(conn: Connection, sql: str, *args: object) -> asyncpg.Record:
    """The row of a statement that always returns one (an aggregate; an upsert's
    RETURNING): typed as a row, where fetchrow's may be None."""
    row = await conn.fetchrow(sql, *args)
    if row is None:
        raise RuntimeError(f"no row from a statement that always returns one: {sql[:80]!r}")
    return row


def sqlalchemy_url(url: str) -> str:
    """The same database as `url`, spelled for SQLAlchemy's asyncpg dialect."""
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def describe(url: str) -> str:
    """The URL with its password masked, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def asyncpg_dsn(url: str) -> str:
    """The URL in the form asyncpg reads (`postgresql://`, no driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_pool(
    url: str,
    *,
    size: int,
    command_timeout: float,
    statement_timeout: float | None = None,
    work_mem: str | None = None,
    session_state: bool = True,
    generic_plans: bool = False,
) -> Pool:
    """A pool that opens connections lazily, so the service starts while the database is away.

    `statement_timeout` (seconds), when given, makes PostgreSQL itself cancel longer
    statements.
    """
    settings = {
        "application_name": "receiver",
        # Prepared statements would otherwise settle on a generic plan made
        # while the tables were small (whole-table scans that never go away).
        # The webhook writer's batches are the exception: their statements are
        # written to keep one plan that reads by key (receiver/ingest/writer.py).
        "plan_cache_mode": "force_custom_plan",
        # JIT compiles a plan the planner thinks costly: hundreds of milliseconds
        # (measured) spent on statements that then touch a few rows.
        "jit": "off",
    }
    if statement_timeout is not None:
        settings["statement_timeout"] = str(int(statement_timeout * 1000))
    if work_mem is not None:
        settings["work_mem"] = work_mem
    if generic_plans:
        settings.update(GENERIC_PLANS)
    return await asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=0,
        max_size=size,
        command_timeout=command_timeout,
        # Idle connections are dropped so that a restarted database is not met
        # with a pool full of dead sockets.
        max_inactive_connection_lifetime=60,
        server_settings=settings,
        # Without session state (no LISTEN, SET or advisory lock is ever left on its
        # connections), a connection goes back to the pool without the reset query
        # that would otherwise cost a round trip per batch; an open transaction is
        # still rolled back.
        reset=None if session_state else _keep_session,
    )


async def _keep_session(connection: Any) -> None:
    return None


# A batch's statements are planned once per connection, not once per batch: planning
# them took a third of PostgreSQL's time a batch (bench/batch_cost.py). A plan kept
# must stay right as the tables grow, so it is made without whole-table scans: every
# statement looks its rows up by key, and a plan made while a table was small would
# otherwise go on scanning it. When autovacuum analyzes a table, PostgreSQL makes
# the plans that read it again, with the new statistics. The writer's connections
# (a pool of their own) have them for the session; the projector's batches set them
# for the transaction only, in BEGIN's round trip, so that the dispatcher's queries
# on the same pool are planned as before.
GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}
_BEGIN = "BEGIN; " + "; ".join(
    f"SET LOCAL {name} = {value}" for name, value in GENERIC_PLANS.items()
)
# What the projector writes is derived from events already durable: its COMMIT need
# not wait for the WAL to reach the disk. If the server crashes first, the whole
# transaction is lost, the deletion of its pending rows with it, and they are
# projected again; a later durable commit (a webhook batch, a dispatcher's claim of
# a forward the batch made) flushes the WAL up to it, this commit included.
_BEGIN_DERIVED = _BEGIN + "; SET LOCAL synchronous_commit = off"


@contextlib.asynccontextmanager
async def batch_transaction(conn: Connection, *, derived: bool = False) -> AsyncIterator[None]:
    """A transaction with the batch's planner settings: committed unless the body raises.

    `derived`: it writes only what can be made again from durable rows, and does not
    wait for its commit to be flushed.
    """
    await conn.execute(_BEGIN_DERIVED if derived else _BEGIN)
    try:
        yield
    except BaseException:
        # The error that ended the batch is the one to report; a connection too broken
        # to roll back is terminated when the pool takes it back.
        if not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
