"""The `receiver` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import asyncpg
import orjson
import structlog

from receiver.app import WEBHOOK_PATH, dispatcher
from receiver.db import migrate
from receiver.db.embedded import embedded_database_url, start_embedded
from receiver.db.engine import asyncpg_dsn, create_pool, describe
from receiver.db.models import ForwardState
from receiver.forwarding.handlers import (
    HandlerError,
    NewHandler,
    add_handler,
    list_handlers,
    remove_handler,
    set_enabled,
)
from receiver.forwarding.routing import route_unrouted
from receiver.forwarding.signing import new_secret
from receiver.ingest.auth import TOKEN_FILE, resolve_webhook_auth
from receiver.logging import configure_logging
from receiver.settings import Settings, SettingsError, load_settings

log = structlog.get_logger("receiver.cli")


@dataclass(frozen=True, slots=True)
class Database:
    """The database the service will use, and the embedded server behind it if any."""

    url: str
    server: Any = None

    @property
    def embedded(self) -> bool:
        return self.server is not None


def open_database(settings: Settings) -> Database:
    """RECEIVER_DATABASE_URL when set; otherwise the embedded server in the data folder."""
    if settings.database_url is not None:
        return Database(url=settings.database_url)
    server = start_embedded(settings.data_dir)
    return Database(url=embedded_database_url(server), server=server)


def serve(args: argparse.Namespace) -> int:
    """Run the service with uvicorn (and the embedded database unless a URL is set)."""
    import uvicorn

    configured = _configured()
    database = open_database(configured)
    settings = resolve_webhook_auth(
        configured.model_copy(update={"database_url": database.url}), embedded=database.embedded
    )
    if database.embedded or args.migrate:
        migrate.upgrade(database.url)
    token_generated = settings.callr_url_token != configured.callr_url_token
    _announce(settings, database, host=args.host, port=args.port, token_generated=token_generated)
    # The workers build their app from the environment: hand them what was decided here.
    os.environ["RECEIVER_DATABASE_URL"] = database.url
    if settings.callr_url_token:
        os.environ["RECEIVER_CALLR_URL_TOKEN"] = settings.callr_url_token
    _exit_cleanly_on_stop_signals()
    uvicorn.run(
        "receiver.asgi:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=args.graceful_timeout,
        server_header=False,
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
    settings = _configured()
    database = open_database(settings)
    migrate.upgrade(database.url)
    log.info("migrated", database=describe(database.url), revision=migrate.head_revision())
    return 0


def _run_with_connection(operation: Callable[[Any], Awaitable[int]]) -> int:
    """Run `operation(conn)` against the configured (or embedded) database."""
    settings = _configured()
    database = open_database(settings)

    async def run() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(database.url))
        try:
            return await operation(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def handlers_add(args: argparse.Namespace) -> int:
    """Register a handler for a user_data value (or prefix*), or the default one."""
    secret = new_secret() if args.generate_secret else args.secret
    new = NewHandler(
        user_data=None if args.default else args.user_data,
        default=args.default,
        url=args.url,
        secret=secret,
        timeout=args.timeout,
    )

    async def add(conn: Any) -> int:
        try:
            handler, routed = await add_handler(conn, new)
        except HandlerError as error:
            print(f"receiver: {error}", file=sys.stderr)
            return 2
        print(_json(handler.to_json()))
        if args.generate_secret:
            print(f"secret (shown once, give it to the handler): {secret}")
        if routed:
            print(f"{routed} waiting forward(s) routed")
        return 0

    return _run_with_connection(add)


def handlers_list(args: argparse.Namespace) -> int:
    """Print every handler, one JSON object per line."""

    async def show(conn: Any) -> int:
        for handler in await list_handlers(conn):
            print(_json(handler.to_json()))
        return 0

    return _run_with_connection(show)


def handlers_remove(args: argparse.Namespace) -> int:
    """Remove a handler; its undelivered forwards are routed again."""

    async def remove(conn: Any) -> int:
        if await remove_handler(conn, args.id):
            return 0
        print(f"receiver: no handler {args.id}", file=sys.stderr)
        return 1

    return _run_with_connection(remove)


def handlers_toggle(args: argparse.Namespace) -> int:
    """Enable or disable a handler."""

    async def toggle(conn: Any) -> int:
        handler = await set_enabled(conn, args.id, enabled=args.enabled)
        if handler is None:
            print(f"receiver: no handler {args.id}", file=sys.stderr)
            return 1
        print(_json(handler.to_json()))
        return 0

    return _run_with_connection(toggle)


def forwards_route_pending(args: argparse.Namespace) -> int:
    """Route the forwards that were waiting for a handler."""

    async def route(conn: Any) -> int:
        print(f"{await route_unrouted(conn)} forward(s) routed")
        return 0

    return _run_with_connection(route)


def forwards_list(args: argparse.Namespace) -> int:
    """Print forwards (newest first), optionally of one state, one JSON object per line."""

    async def show(conn: Any) -> int:
        rows = await conn.fetch(
            "SELECT id, event_id, sms_id, handler_id, rule, user_data, state, attempts,"
            " next_attempt_at, created_at, delivered_at, last_error FROM forwards"
            " WHERE $1::text IS NULL OR state = $1 ORDER BY id DESC LIMIT $2",
            args.state,
            args.limit,
        )
        for row in rows:
            print(_json(dict(row)))
        return 0

    return _run_with_connection(show)


def worker(args: argparse.Namespace) -> int:
    """Run only the forward dispatcher (for deployments that separate it from serve)."""
    settings = _configured()
    database = open_database(settings)
    settings = settings.model_copy(update={"database_url": database.url})

    async def run() -> None:
        pool = await create_pool(
            database.url, size=settings.db_pool_size, command_timeout=settings.db_command_timeout
        )
        task = asyncio.create_task(dispatcher(settings, pool).run())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("worker_started", database=describe(database.url))
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()
        log.info("worker_stopped")

    asyncio.run(run())
    return 0


def _json(document: dict[str, Any]) -> str:
    return orjson.dumps(document, default=str).decode()


def _configured() -> Settings:
    settings = load_settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return settings


def _announce(
    settings: Settings, database: Database, *, host: str, port: int, token_generated: bool
) -> None:
    base = f"http://{host}:{port}"
    path = WEBHOOK_PATH
    if settings.callr_url_token:
        path += f"/{settings.callr_url_token}"
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
    if token_generated:
        lines.append(
            f"                  (token generated, kept in {settings.data_dir / TOKEN_FILE})"
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


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per operation."""
    parser = argparse.ArgumentParser(
        prog="receiver",
        description="Receive CALLR SMS webhooks durably. Settings come from RECEIVER_* variables.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('receiver')}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run the webhook service")
    serve_parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve_parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve_parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve_parser.add_argument(
        "--migrate",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="apply migrations before serving (always done for the embedded database)",
    )
    serve_parser.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies whose X-Forwarded-For / -Proto headers are trusted",
    )
    serve_parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=30,
        help="seconds to finish in-flight requests on SIGTERM",
    )
    serve_parser.set_defaults(handler=serve)

    migrate_parser = commands.add_parser("migrate", help="apply the database migrations")
    migrate_parser.set_defaults(handler=run_migrations)

    worker_parser = commands.add_parser("worker", help="run only the forward dispatcher")
    worker_parser.set_defaults(handler=worker)

    _add_handler_commands(commands)
    _add_forward_commands(commands)
    return parser


def _add_handler_commands(commands: Any) -> None:
    handlers = commands.add_parser("handlers", help="the internal handlers that receive replies")
    sub = handlers.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="register a handler")
    which = add.add_mutually_exclusive_group(required=True)
    which.add_argument("--user-data", help="the user_data it serves; a final * matches a prefix")
    which.add_argument("--default", action="store_true", help="serve what no other handler does")
    add.add_argument("--url", required=True, help="where the replies are posted")
    secrets = add.add_mutually_exclusive_group()
    secrets.add_argument("--secret", help="a Standard Webhooks secret (whsec_...) to sign with")
    secrets.add_argument(
        "--generate-secret", action="store_true", help="make a secret and print it once"
    )
    add.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt")
    add.set_defaults(handler=handlers_add)
    sub.add_parser("list", help="list the handlers").set_defaults(handler=handlers_list)
    for name, helptext, handler, extra in (
        ("remove", "remove a handler", handlers_remove, {}),
        ("disable", "stop forwarding to a handler", handlers_toggle, {"enabled": False}),
        ("enable", "forward to a handler again", handlers_toggle, {"enabled": True}),
    ):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("id", type=int)
        command.set_defaults(handler=handler, **extra)


def _add_forward_commands(commands: Any) -> None:
    forwards = commands.add_parser("forwards", help="the replies forwarded to handlers")
    sub = forwards.add_subparsers(dest="action", required=True)
    route = sub.add_parser("route-pending", help="route the forwards waiting for a handler")
    route.set_defaults(handler=forwards_route_pending)
    listing = sub.add_parser("list", help="list forwards, newest first")
    listing.add_argument(
        "--state", choices=[state.value for state in ForwardState], help="only this state"
    )
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(handler=forwards_list)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `receiver` command."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except SettingsError as error:
        print(f"receiver: {error}", file=sys.stderr)
        return 2
    return result
