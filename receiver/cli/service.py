"""The service commands: `serve`, `migrate` and `worker`, and the database they open."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import enum
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import version
from typing import cast

import asyncpg
import structlog

from receiver import background
from receiver.app import WEBHOOK_PATH
from receiver.background import sending, work_of
from receiver.cli.access import ADMIN_TOKEN_FILE, Access, FirstRun, settle_access
from receiver.cli.arguments import configured
from receiver.cli.database import (
    CONNECT_TIMEOUT,
    Database,
    open_database,
    upgrade,
)
from receiver.db.engine import (
    UNAVAILABLE_OR_REFUSED,
    asyncpg_dsn,
    create_pool,
    describe,
)
from receiver.ingest.auth import TOKEN_FILE, resolve_webhook_auth
from receiver.settings import Settings

log = structlog.get_logger("receiver.cli")


class TokenSource(enum.Enum):
    """Where the webhook URL token of this start came from."""

    GENERATED = "generated"
    KEPT = "kept"
    ENVIRONMENT = "environment"


def serve(args: argparse.Namespace) -> int:
    """Run the service with uvicorn (and the embedded database unless a URL is set)."""
    import uvicorn

    from receiver.cli.http_protocol import HttpProtocol

    given = configured()
    database = open_database(given)
    token_kept = (given.data_dir / TOKEN_FILE).exists()
    settings = resolve_webhook_auth(
        given.model_copy(update={"database_url": database.url}), embedded=database.embedded
    )
    if database.embedded or args.migrate:
        upgrade(database.session)
    if not settings.callr_url_token:
        token_source = None
    elif given.callr_url_token:
        token_source = TokenSource.ENVIRONMENT
    else:
        token_source = TokenSource.KEPT if token_kept else TokenSource.GENERATED
    access = asyncio.run(_settle_access(settings, embedded=database.embedded))
    _announce(
        settings,
        database,
        host=args.host,
        port=args.port,
        token_source=token_source,
        access=access,
    )
    # The workers build their app from the environment: hand them what was decided here.
    os.environ["RECEIVER_DATABASE_URL"] = database.url
    if settings.callr_url_token:
        os.environ["RECEIVER_CALLR_URL_TOKEN"] = settings.callr_url_token
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker counts into files here, and /metrics on any worker sums them.
        metrics_dir = tempfile.mkdtemp(prefix="receiver-metrics-")
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    trusted = (
        [ip.strip() for ip in args.forwarded_allow_ips.split(",") if ip.strip()]
        if args.forwarded_allow_ips is not None
        else list(settings.trusted_proxies)
    )
    _exit_cleanly_on_stop_signals()
    uvicorn.run(
        "receiver.asgi:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        # X-Forwarded-For and -Proto believed only from the trusted proxies (none by
        # default: the client is the connection's peer).
        proxy_headers=bool(trusted),
        forwarded_allow_ips=",".join(trusted) or None,
        timeout_graceful_shutdown=args.graceful_timeout,
        server_header=False,
        http=HttpProtocol,
        # Also the ceiling of open connections (receiver.cli.http_protocol).
        limit_concurrency=args.max_connections,
        timeout_keep_alive=args.keep_alive,
    )
    return 0


def _exit_cleanly_on_stop_signals() -> None:
    """Make SIGTERM / SIGINT end the process with exit code 0 once uvicorn has drained.

    uvicorn drains, restores the handlers it found, then raises the signal again so
    that the process dies of it. Dying of a signal skips `atexit`, which is what
    stops the embedded database; exiting normally runs it.
    """

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)


def run_migrations(args: argparse.Namespace) -> int:
    """Bring the database schema to the latest revision."""
    settings = configured()
    database = open_database(settings)
    revision = upgrade(database.session)
    log.info("migrated", database=describe(database.session), revision=revision)
    return 0


def worker(args: argparse.Namespace) -> int:
    """Run the projector, the forward dispatcher and the sender, without the HTTP side.

    For deployments that separate them from serve (RECEIVER_PROJECTOR=false,
    RECEIVER_DISPATCHER=false and RECEIVER_SENDER=false on the serve processes), or
    that add capacity to them. The same settings, on the worker, leave out any.
    """
    settings = configured()
    if not (settings.dispatcher or settings.projector or sending(settings)):
        print(
            "receiver worker: RECEIVER_DISPATCHER and RECEIVER_PROJECTOR are false, and no"
            " sender runs (RECEIVER_SENDER=false, or no CALLR credentials): nothing to run",
            file=sys.stderr,
        )
        return 2
    database = open_database(settings)
    settings = settings.model_copy(update={"database_url": database.url})

    async def run() -> None:
        pool = await create_pool(
            database.url,
            size=settings.db_pool_size,
            command_timeout=settings.db_command_timeout,
            pooled=settings.pooled,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            work = work_of(settings, pool)
            async with background.running(work):
                log.info(
                    "worker_started",
                    database=describe(database.url),
                    dispatcher=settings.dispatcher,
                    projector=settings.projector,
                    reconcile=settings.callr_api_configured,
                    sender=sending(settings),
                )
                await stop.wait()
        finally:
            await pool.close()
        log.info("worker_stopped")

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run())
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (uvicorn's standard extras bring it, and serve
    runs on it): the worker's projector drains a backlog on it with 8 to 15% less CPU an
    event (bench/drain.py)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without uvloop
        return None
    return cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)


async def _settle_access(settings: Settings, *, embedded: bool) -> Access:
    """Who can open the console, as the database says; an external database that is away
    or not migrated yet does not stop the start (its tokens are then not known here)."""
    assert settings.session_database_url is not None
    try:
        conn = await asyncpg.connect(
            asyncpg_dsn(settings.session_database_url), timeout=CONNECT_TIMEOUT
        )
        try:
            return await settle_access(conn, settings, embedded=embedded)
        finally:
            await conn.close()
    except UNAVAILABLE_OR_REFUSED:
        if embedded:
            raise
        configured = bool(settings.api_tokens or settings.admin_tokens)
        return Access(open=True if configured else None, first_run=None)


def _announce(
    settings: Settings,
    database: Database,
    *,
    host: str,
    port: int,
    token_source: TokenSource | None,
    access: Access,
) -> None:
    """The start banner. The URL token is a credential: printed whole only when generated
    now (the one time its owner must copy it) or read from the data folder it is kept in;
    from the environment, only its last four characters."""
    base = f"http://{host}:{port}"
    path = WEBHOOK_PATH
    token = settings.callr_url_token
    if token:
        shown = f"…{token[-4:]}" if token_source is TokenSource.ENVIRONMENT else token
        path += f"/{shown}"
    if database.embedded:
        where = f"embedded PostgreSQL in {settings.data_dir / 'postgres'}"
    else:
        where = "RECEIVER_DATABASE_URL"
    auth = [
        name
        for name, on in (
            ("URL token", settings.callr_url_token),
            ("HMAC signature", settings.callr_hmac_secrets),
            ("basic auth", settings.callr_basic_auth),
        )
        if on
    ] or ["none (RECEIVER_ALLOW_UNAUTHENTICATED)"]
    lines = [
        f"receiver {version('receiver')}",
        f"  listening on    {base}",
        f"  database        {where}: {describe(database.url)}",
        f"  webhook URL     {base}{path}",
        f"  authentication  {', '.join(auth)}",
    ]
    kept_in = settings.data_dir / TOKEN_FILE
    notes = {
        TokenSource.GENERATED: f"(token generated now, kept in {kept_in})",
        TokenSource.KEPT: f"(token kept in {kept_in})",
        TokenSource.ENVIRONMENT: "(token from RECEIVER_CALLR_URL_TOKEN, shown by its last 4)",
    }
    if token_source is not None:
        lines.append(f"                  {notes[token_source]}")
    first_run = {
        FirstRun.ACTIVE: "(sign in with the admin token in"
        f" {settings.data_dir / ADMIN_TOKEN_FILE})",
        FirstRun.RETIRED: "(the first-run admin token is retired: an admin token is configured)",
        FirstRun.REVOKED: "(the first-run admin token was revoked: receiver tokens add makes one)",
    }
    if access.open:
        lines.append(f"  console         {base}/console")
        if access.first_run is not None:
            lines.append(f"                  {first_run[access.first_run]}")
    elif access.open is None:
        lines.append(
            f"  console         {base}/console (with a token made by `receiver tokens add`:"
            " the database did not answer to say which it keeps)"
        )
    else:
        lines.append(
            "  console, API    closed: no RECEIVER_API_TOKENS or RECEIVER_ADMIN_TOKENS is set,"
            " and no token was made (receiver tokens add)"
        )
    print("\n".join(lines), flush=True)
    log.info(
        "receiver_starting",
        listen=base,
        database=describe(database.url),
        embedded=database.embedded,
        webhook_path=WEBHOOK_PATH + ("/{token}" if settings.callr_url_token else ""),
        authentication=auth,
    )
