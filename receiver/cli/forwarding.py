"""The forwarding commands: `handlers ...` and `forwards ...`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson

from receiver.cli.service import configured, open_migrated_database, timestamp, whole
from receiver.db.engine import asyncpg_dsn
from receiver.db.models import ForwardState
from receiver.forwarding.destinations import Destinations
from receiver.forwarding.handlers import (
    HandlerError,
    NewHandler,
    add_handler,
    list_handlers,
    remove_handler,
    set_enabled,
)
from receiver.forwarding.outbox import RETRYABLE_STATES, ForwardFilter, retry_forwards
from receiver.forwarding.routing import route_unrouted
from receiver.forwarding.signing import new_secret


def _run_with_connection(operation: Callable[[Any], Awaitable[int]]) -> int:
    """Run `operation(conn)` against the configured (or embedded) database."""
    settings = configured()
    database = open_migrated_database(settings)

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
        events=tuple(e.strip() for e in args.events.split(",") if e.strip()),
        status_filter=args.status_filter,
    )

    settings = configured()
    destinations = Destinations.of(settings.handler_allowed_networks, settings.database_url)

    async def add(conn: Any) -> int:
        try:
            handler, routed = await add_handler(conn, new, destinations)
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


def forwards_retry(args: argparse.Namespace) -> int:
    """Queue forwards (dead ones by default) for delivery now."""
    selection = ForwardFilter(
        state=args.state,
        handler_id=args.handler_id,
        since=args.since,
        until=args.until,
        event_id=args.event_id,
    )

    async def retry(conn: Any) -> int:
        print(f"{await retry_forwards(conn, selection)} forward(s) queued")
        return 0

    return _run_with_connection(retry)


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


def _json(document: dict[str, Any]) -> str:
    return orjson.dumps(document, default=str).decode()


def add_handler_commands(commands: Any) -> None:
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
    add.add_argument(
        "--events",
        default="replies",
        help="the news it gets, comma-separated: replies (the default), status (each change"
        " of the status of an SMS sent with its user_data), or both",
    )
    add.add_argument(
        "--status-filter",
        choices=("all", "terminal"),
        help="with status: every change (all, the default) or only to delivered, failed,"
        " expired or error (terminal)",
    )
    add.set_defaults(run=handlers_add)
    sub.add_parser("list", help="list the handlers").set_defaults(run=handlers_list)
    for name, helptext, handler, extra in (
        ("remove", "remove a handler", handlers_remove, {}),
        ("disable", "stop forwarding to a handler", handlers_toggle, {"enabled": False}),
        ("enable", "forward to a handler again", handlers_toggle, {"enabled": True}),
    ):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("id", type=int)
        command.set_defaults(run=handler, **extra)


def add_forward_commands(commands: Any) -> None:
    forwards = commands.add_parser("forwards", help="the replies forwarded to handlers")
    sub = forwards.add_subparsers(dest="action", required=True)
    route = sub.add_parser("route-pending", help="route the forwards waiting for a handler")
    route.set_defaults(run=forwards_route_pending)
    listing = sub.add_parser("list", help="list forwards, newest first")
    listing.add_argument(
        "--state", choices=[state.value for state in ForwardState], help="only this state"
    )
    listing.add_argument("--limit", type=whole(1, 10_000), default=100, help="at most this many")
    listing.set_defaults(run=forwards_list)
    retry = sub.add_parser("retry", help="queue forwards for delivery now (dead ones by default)")
    retry.add_argument("--state", choices=RETRYABLE_STATES, default="dead")
    retry.add_argument(
        "--handler", dest="handler_id", type=int, help="only this handler's forwards"
    )
    retry.add_argument("--since", type=timestamp, help="created at or after (ISO 8601, UTC)")
    retry.add_argument("--until", type=timestamp, help="created before (ISO 8601, UTC)")
    retry.add_argument("--event-id", help="only the forward of this event")
    retry.set_defaults(run=forwards_retry)
