"""A PostgreSQL server to make databases on (the tests' or the benchmarks'), running apps,
CALLR's example events."""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from receiver.callr.envelope import Envelope, parse_envelope
from receiver.callr.signature import sign
from receiver.db import migrate
from receiver.db.embedded import start_embedded
from receiver.projection.store import Incoming


def incoming(body: bytes, **envelope_changes: Any) -> Incoming:
    """A webhook request for the writer or the store: `body` parsed, received now."""
    parsed = parse_envelope(body)
    assert isinstance(parsed, Envelope)
    return Incoming(
        parsed=parsed._replace(**envelope_changes),
        body=body,
        received_at=datetime.now(UTC),
        headers={},
        remote_addr="127.0.0.1",
    )


async def until_a_lock_wait(conn: asyncpg.Connection, pid: int | None = None) -> None:
    """Return once a session (`pid`, or any) waits for a lock; there is no event for it."""
    while not await conn.fetchval(  # noqa: ASYNC110
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND ($1::int IS NULL OR pid = $1)", pid
    ):
        await asyncio.sleep(0.01)


# CALLR's example events (from the provider notes), kept with the tests.
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


def example(name: str) -> bytes:
    """The raw bytes of one of CALLR's example events (`v1-sms.mo`, ...)."""
    return (EXAMPLES_DIR / f"{name}.json").read_bytes()


EXAMPLE_NAMES = (
    "v1-sms.mo",
    "v1-sms.mt.status_update",
    "v2.sms.inbound.received",
    "v2.sms.outbound.updated",
)


@dataclass(frozen=True)
class PostgresServer:
    """A server the tests and benchmarks may create and drop databases on."""

    admin_url: str

    def url_for(self, database: str) -> str:
        url = make_url(self.admin_url).set(database=database)
        return url.render_as_string(hide_password=False)

    def execute(self, sql: str) -> None:
        asyncio.run(_execute(self.admin_url, sql))


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def fetch(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of `sql` on the database at `url`, as dicts."""
    conn = await asyncpg.connect(url)
    try:
        return [dict(row) for row in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def pending(url: str) -> int:
    """How many stored events wait for the projector on the database at `url`."""
    rows = await fetch(url, "SELECT count(*) AS n FROM projection_pending")
    return int(rows[0]["n"])


class ReceiverClient(httpx.AsyncClient):
    """A client of one app, which knows the app's database (to wait for its projector)."""

    def __init__(self, database_url: str, **options: Any) -> None:
        super().__init__(**options)
        self.database_url = database_url


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan started, and an HTTP client speaking to it."""
    async with (
        # A slow CI machine gets time to start and stop the app; a real hang still fails.
        LifespanManager(app, startup_timeout=20, shutdown_timeout=20) as manager,
        ReceiverClient(
            app.state.settings.database_url,
            transport=httpx.ASGITransport(app=manager.app),
            base_url="http://receiver.test",
        ) as client,
    ):
        yield client


async def until_projected(where: httpx.AsyncClient | str, *, seconds: float = 20.0) -> None:
    """Return once the projector has applied every stored event (of `running`'s app, or a URL).

    A 2xx promises the event is stored, not projected: tests that read message
    records, history or forwards after sending wait for this first.
    """
    url = where if isinstance(where, str) else _database_of(where)
    conn = await asyncpg.connect(url)
    try:
        async with asyncio.timeout(seconds):
            # A row that a projector has deleted but not committed is still seen here.
            while await conn.fetchval("SELECT EXISTS (SELECT 1 FROM projection_pending)"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        await conn.close()


def _database_of(client: httpx.AsyncClient) -> str:
    assert isinstance(client, ReceiverClient), "a client of testkit.support.running"
    return client.database_url


def with_fields(body: bytes, **changes: Any) -> bytes:
    """The example with some top-level fields changed (`try_` for `try`)."""
    document = json.loads(body)
    for name, value in changes.items():
        document[name.rstrip("_")] = value
    return json.dumps(document).encode()


def signed_headers(body: bytes, secret: str, algorithm: str = "sha256") -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-callr-hmacsignature": sign(body, secret, algorithm),
    }


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """`app` behind a real uvicorn (run as `receiver serve` runs it) on a free loopback port.

    Yields its base URL.
    """
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    from receiver.cli.http_protocol import HttpProtocol

    config = uvicorn.Config(app, log_config=None, access_log=False, http=HttpProtocol)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        # The lifespan (pool, writer) must be up before the first request.
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


_LOGIN_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def console_sign_in(
    client: httpx.AsyncClient, token: str, next_page: str = ""
) -> httpx.Response:
    """Sign in as a browser does: the form (and its cookie) first, then the post."""
    form = await client.get("/console/login")
    found = _LOGIN_CSRF.search(form.text)
    # Signed in already, the page redirects: the form's token is still in its cookie.
    csrf = found.group(1) if found else client.cookies.get("receiver_login", "")
    return await client.post(
        "/console/login", data={"token": token, "next": next_page, "csrf": csrf}
    )


def console_sign_in_sync(client: httpx.Client, token: str) -> httpx.Response:
    """`console_sign_in` for a synchronous client."""
    form = client.get("/console/login")
    found = _LOGIN_CSRF.search(form.text)
    csrf = found.group(1) if found else client.cookies.get("receiver_login", "")
    return client.post("/console/login", data={"token": token, "next": "", "csrf": csrf})


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
