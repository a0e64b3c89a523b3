"""A PostgreSQL server and migrated scratch databases for the benchmark scripts.

RECEIVER_BENCH_DATABASE_URL names a server to use (its databases are made and
dropped here); without it an embedded server is started in a temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.db import migrate
from receiver.db.embedded import start_embedded


@dataclass(frozen=True)
class PostgresServer:
    """A server the benchmarks may create and drop databases on."""

    admin_url: str

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def execute(self, sql: str) -> None:
        asyncio.run(_execute(self.admin_url, sql))


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def bench_server() -> Iterator[PostgresServer]:
    """The server named by RECEIVER_BENCH_DATABASE_URL, or an embedded one for this run."""
    admin = os.environ.get("RECEIVER_BENCH_DATABASE_URL")
    if admin:
        yield PostgresServer(admin)
        return
    server = start_embedded(Path(tempfile.mkdtemp()) / "bench", cleanup="delete")
    try:
        yield PostgresServer(server.get_uri("postgres"))
    finally:
        server.cleanup()


@contextmanager
def scratch_database(
    postgres: PostgresServer, *, template: str | None = None, migrated: bool = True
) -> Iterator[str]:
    """A fresh database at the schema's head (a clone of `template` when given; empty when
    not `migrated`); its name."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    clone = f' TEMPLATE "{template}"' if template else ""
    postgres.execute(f'CREATE DATABASE "{name}"{clone}')
    try:
        if template is None and migrated:
            migrate.upgrade(postgres.url_for(name))
        yield name
    finally:
        postgres.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
