"""The embedded PostgreSQL used when no `RECEIVER_DATABASE_URL` is set.

The `pgserver` package ships the server binaries in its wheel; the cluster lives in
`<data dir>/postgres` and listens only on a Unix socket in that folder.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import asyncpg

from receiver.settings import SettingsError

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

DATABASE_NAME = "receiver"


def _import_pgserver() -> ModuleType:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI); pgserver
        # then falls back to a folder under /tmp, which is what we want.
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError:
            raise SettingsError(
                "no RECEIVER_DATABASE_URL is set, and the embedded PostgreSQL is not"
                " installed: set the URL, or install receiver[embedded]"
            ) from None
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver


def embedded_bindir() -> Path | None:
    """Where the embedded server's own programs are; None when it is not installed."""
    try:
        pgserver = _import_pgserver()
    except SettingsError:
        return None
    folder = Path(str(pgserver.__file__)).parent / "pginstall" / "bin"
    return folder if folder.is_dir() else None


def start_embedded(data_dir: Path, *, cleanup: str = "stop") -> PostgresServer:
    """Start (or join) the embedded server for `data_dir`; it stops when this process exits."""
    pgserver = _import_pgserver()
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server: PostgresServer = pgserver.get_server(
            data_dir.resolve() / "postgres", cleanup_mode=cleanup
        )
        return server


def embedded_database_url(server: PostgresServer) -> str:
    """The URL of the service's own database on `server`, created if it does not exist."""
    asyncio.run(ensure_database(server.get_uri("postgres"), DATABASE_NAME))
    return server.get_uri(DATABASE_NAME)


async def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` through `admin_url` unless it exists."""
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
