"""A database URL naming several hosts (a primary and its standbys), as libpq and asyncpg
read it, is read alike by every part that takes the URL: connections, migrations,
messages, PostgreSQL's programs and the forwarding rule that keeps the database out
of a handler's reach."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from receiver.db import migrate
from receiver.db.engine import asyncpg_dsn, describe, hosts, password_apart, sqlalchemy_url
from receiver.db.programs import libpq
from receiver.forwarding.destinations import Destinations
from tests.test_cli import free_port

SEVERAL = (
    "postgresql://receiver:s%40cret@db1:5432,db2:6432/receiver?target_session_attrs=read-write"
)


def test_every_reader_of_the_url_sees_every_host() -> None:
    assert hosts(SEVERAL) == [("db1", 5432), ("db2", 6432)]
    assert describe(SEVERAL) == (
        "postgresql://receiver:***@db1:5432,db2:6432/receiver?target_session_attrs=read-write"
    )
    assert asyncpg_dsn(SEVERAL) == SEVERAL
    assert sqlalchemy_url(SEVERAL) == (
        "postgresql+asyncpg://receiver:s%40cret@/receiver"
        "?host=db1%3A5432&host=db2%3A6432&target_session_attrs=read-write"
    )
    dsn, env = libpq(SEVERAL)
    assert dsn == "postgresql://receiver@db1:5432,db2:6432/receiver?target_session_attrs=read-write"
    assert env["PGPASSWORD"] == "s@cret"
    assert password_apart("postgresql://u@h/db") == ("postgresql://u@h/db", None)


@pytest.mark.parametrize(
    ("url", "without", "password"),
    [
        ("postgresql://u:s%40cret@h/db", "postgresql://u@h/db", "s@cret"),
        ("postgresql://u@h/db?password=s%40cret", "postgresql://u@h/db", "s@cret"),
        (
            "postgresql://u@h/db?password=x&sslmode=require",
            "postgresql://u@h/db?sslmode=require",
            "x",
        ),
        (
            "postgresql://u@h/db?sslmode=require&password=x",
            "postgresql://u@h/db?sslmode=require",
            "x",
        ),
        ("postgresql://h/db?a=1&password=x&b=2", "postgresql://h/db?a=1&b=2", "x"),
        ("postgresql://u@h1,h2/db?password=x", "postgresql://u@h1,h2/db", "x"),
        ("postgresql://u@h/db", "postgresql://u@h/db", None),
    ],
)
def test_a_password_is_never_shown_wherever_the_url_carries_it(
    url: str, without: str, password: str | None
) -> None:
    """In the user part or as a query parameter (libpq reads both): masked in what is
    logged and printed, moved to PGPASSWORD for PostgreSQL's programs."""
    assert password_apart(url) == (without, password)
    dsn, env = libpq(url)
    assert dsn == without
    assert env.get("PGPASSWORD") == password
    shown = describe(url)
    if password is not None:
        assert password not in shown
        assert "s%40cret" not in shown
        assert "***" in shown


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h", [("h", 5432)]),
        ("postgres://u@[::1]:6000/db", [("::1", 6000)]),
        ("postgresql://u@/db?host=/run/postgresql", []),
        ("postgresql://u@/db?host=a&host=b&port=5433", [("a", 5433), ("b", 5433)]),
    ],
)
def test_hosts_as_libpq_reads_them(url: str, expected: list[tuple[str, int]]) -> None:
    assert hosts(url) == expected


def test_no_host_of_the_database_is_a_handler_destination() -> None:
    url = "postgresql://u@127.0.0.7:5432,127.0.0.8:6432/receiver"
    destinations = Destinations.of([], url)
    for host, port in (("127.0.0.7", 5432), ("127.0.0.8", 6432)):
        refused = asyncio.run(destinations.check_now(f"http://{host}:{port}/hook"))
        assert refused is not None, (host, port)
    assert asyncio.run(destinations.check_now("http://127.0.0.8:7000/hook")) is None


def test_connections_and_migrations_find_the_host_that_answers(empty_database_url: str) -> None:
    # A first host that refuses (a primary lost), the server after it: both the pool's
    # asyncpg and the migrations' SQLAlchemy go on to the next.
    if "?host=" in empty_database_url:  # a Unix socket's folder: one that is not there first
        url = empty_database_url.replace("?host=", "?host=%2Fnowhere%2C", 1)
    else:
        down = free_port()
        url = empty_database_url.replace("@127.0.0.1:", f"@127.0.0.1:{down},127.0.0.1:", 1)
    url += "&" if "?" in url else "?"
    url += "target_session_attrs=read-write"
    assert url != empty_database_url
    migrate.upgrade(url)

    async def revision() -> str:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            found: str = await conn.fetchval("SELECT version_num FROM alembic_version")
            return found
        finally:
            await conn.close()

    assert asyncio.run(revision()) == migrate.head_revision()
