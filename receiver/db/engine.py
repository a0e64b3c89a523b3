"""Connections to PostgreSQL: the asyncpg pool the service runs on, and URL helpers."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

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
    # Several hosts, none writable (a failover under way), or one that became read-only.
    asyncpg.exceptions.TargetServerAttributeNotMatched,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
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


# A libpq URL: `postgresql://user:password@h1:5432,h2:5432/db?target_session_attrs=...`;
# several hosts are written as libpq and asyncpg read them, which SQLAlchemy's URL does
# not: they are moved to its `host` query parameters for it alone.
_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][\w+.-]*)://(?:(?P<userinfo>[^@/?#]*)@)?(?P<hosts>[^/?#]*)(?P<rest>.*)$",
    re.DOTALL,
)


def _parts(url: str) -> re.Match[str]:
    found = _URL.match(url)
    if found is None:
        raise ValueError("not a postgresql:// URL")
    return found


def _listed(url: str) -> tuple[re.Match[str], list[tuple[str, int]], list[tuple[str, str]]]:
    """The URL's parts, every host it names (in the authority or `host` parameters,
    comma-separated or repeated; Unix socket folders included) with its port, and its
    other query parameters."""
    parts = _parts(url)
    query = parse_qsl(urlsplit(parts["rest"]).query, keep_blank_values=True)
    named = [h for h in parts["hosts"].split(",") if h]
    named += [h for key, value in query if key == "host" for h in value.split(",") if h]
    ports = [p for key, value in query if key == "port" for p in value.split(",") if p]
    found = []
    for i, each in enumerate(named):
        host, port = each, ""
        if not each.startswith("/"):
            head, colon, tail = each.rpartition(":")
            if (
                colon
                and not tail.endswith("]")
                and (not head.startswith("[") or head.endswith("]"))
            ):
                host, port = head, tail
        port = port or (ports[min(i, len(ports) - 1)] if ports else "5432")
        found.append((unquote(host).strip("[]"), int(port)))
    others = [(key, value) for key, value in query if key not in ("host", "port")]
    return parts, found, others


def hosts(url: str) -> list[tuple[str, int]]:
    """The hosts and ports `url` names over TCP, in order (Unix sockets left out)."""
    return [(host, port) for host, port in _listed(url)[1] if not host.startswith("/")]


def sqlalchemy_url(url: str) -> str:
    """The same database as `url`, spelled for SQLAlchemy's asyncpg dialect (several
    hosts as its `host` parameters, each with its port)."""
    parts, listed, others = _listed(url)
    if len(listed) > 1:
        userinfo = f"{parts['userinfo']}@" if parts["userinfo"] is not None else ""
        query = urlencode([*(("host", f"{h}:{p}") for h, p in listed), *others])
        url = f"{parts['scheme']}://{userinfo}{urlsplit(parts['rest']).path}?{query}"
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


# A password given as a query parameter (`?password=...`, as libpq reads it).
_QUERY_PASSWORD = re.compile(r"([?&])password=([^&#]*)")


def describe(url: str) -> str:
    """The URL with its password masked (in its user part or its query), for logs and
    messages."""
    parts = _parts(url)
    rest = _QUERY_PASSWORD.sub(r"\1password=***", parts["rest"])
    userinfo = parts["userinfo"]
    if userinfo is None:
        return f"{parts['scheme']}://{parts['hosts']}{rest}"
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:***" if colon else user
    return f"{parts['scheme']}://{masked}@{parts['hosts']}{rest}"


def asyncpg_dsn(url: str) -> str:
    """The URL in the form asyncpg reads (`postgresql://`, no driver suffix; several
    hosts as written)."""
    parts = _parts(url)
    return "postgresql://" + url[len(parts["scheme"]) + 3 :]


def password_apart(url: str) -> tuple[str, str | None]:
    """`url` without its password (in its user part or its query), and the password
    (for PGPASSWORD, never argv)."""
    parts = _parts(url)
    rest, password = parts["rest"], None
    given = _QUERY_PASSWORD.search(rest)
    if given is not None:
        password = unquote(given[2])
        rest = rest[: given.start()] + rest[given.end() :]
        if given[1] == "?" and rest.startswith("&", given.start()):
            rest = rest[: given.start()] + "?" + rest[given.start() + 1 :]
    userinfo = parts["userinfo"]
    if userinfo is not None and ":" in userinfo:
        user, _, written = userinfo.partition(":")
        userinfo, password = user, unquote(written)
    at = f"{userinfo}@" if userinfo is not None else ""
    return f"{parts['scheme']}://{at}{parts['hosts']}{rest}", password


async def create_pool(
    url: str,
    *,
    size: int,
    command_timeout: float,
    statement_timeout: float | None = None,
    work_mem: str | None = None,
    session_state: bool = True,
    generic_plans: bool = False,
    pooled: bool = False,
) -> Pool:
    """A pool that opens connections lazily, so the service starts while the database is away.

    `statement_timeout` (seconds), when given, makes PostgreSQL itself cancel longer
    statements. `pooled`: `url` is a connection pooler in transaction mode (see
    `POOLED`).
    """
    options: dict[str, Any]
    if pooled:
        options = POOLED
    else:
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
        options = {
            "server_settings": settings,
            # Without session state (no LISTEN, SET or advisory lock is ever left on its
            # connections), a connection goes back to the pool without the reset query
            # that would otherwise cost a round trip per batch; an open transaction is
            # still rolled back.
            "reset": None if session_state else _keep_session,
        }
    return await asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=0,
        max_size=size,
        command_timeout=command_timeout,
        # Idle connections are dropped so that a restarted database is not met
        # with a pool full of dead sockets.
        max_inactive_connection_lifetime=60,
        **options,
    )


async def _keep_session(connection: Any) -> None:
    return None


# Behind a pooler in transaction mode (PgBouncer's `pool_mode = transaction`), each
# transaction, or each statement outside one, may run on another server connection:
# - no statement is kept prepared (a named one would be missing on the next server
#   connection): asyncpg prepares each unnamed, in the same round trip as its run,
#   and PostgreSQL plans it for its own values;
# - the only startup parameter is one poolers keep (PgBouncer refuses the others), so
#   the server's or the database's own settings apply (docs/configuration.md asks for
#   `jit = off` on the database); the query API's statements are still cut at its
#   timeout, by the client's cancel one second later;
# - no reset query (it would run on whichever server connection is free).
# The transaction-level settings (`SET LOCAL`, as in `batch_transaction`) hold as before.
POOLED: dict[str, Any] = {
    "statement_cache_size": 0,
    "server_settings": {"application_name": "receiver"},
    "reset": _keep_session,
}


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
# JIT off in the transaction too: behind a pooler, the session's setting is the server's.
_BEGIN = "BEGIN; " + "; ".join(
    f"SET LOCAL {name} = {value}" for name, value in {**GENERIC_PLANS, "jit": "off"}.items()
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
