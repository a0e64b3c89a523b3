"""`receiver handlers`: the handlers that receive replies and status news (added, changed,
listed, disabled, removed), and the connection every forwarding command runs on."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import orjson

from receiver.cli.arguments import Commands, configured
from receiver.cli.callr import duration
from receiver.cli.database import open_migrated_database
from receiver.cli.listing import add_json_flag, print_listing
from receiver.db.engine import Connection, asyncpg_dsn
from receiver.forwarding.destinations import Destinations
from receiver.forwarding.handlers import (
    CHANGEABLE,
    HandlerError,
    NewHandler,
    add_handler,
    list_handlers,
    remove_handler,
    rotate_secret,
    set_enabled,
    update_handler,
)
from receiver.forwarding.signing import new_secret


def run_with_connection(operation: Callable[[Any], Awaitable[int]]) -> int:
    """Run `operation(conn)` against the configured (or embedded) database."""
    settings = configured()
    database = open_migrated_database(settings)

    async def run() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(database.session))
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
        events=_events(args.events),
        status_filter=args.status_filter,
        final_statuses=args.final_statuses or (),
        max_in_flight=args.max_in_flight,
        rate=args.rate,
        attempts=args.attempts,
        first_retry=args.first_retry,
        notify_url=args.notify_url,
        name=args.name,
    )

    settings = configured()
    destinations = Destinations.of(settings.handler_allowed_networks, *settings.database_urls)

    async def add(conn: Connection) -> int:
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

    return run_with_connection(add)


def handlers_update(args: argparse.Namespace) -> int:
    """Change a handler in place: its id, user_data and forwards kept."""
    changes: dict[str, object] = {}
    for name in CHANGEABLE:
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    if args.generate_secret:
        changes["secret"] = new_secret()
    if args.events is not None:
        changes["events"] = _events(args.events)
    for name in args.clear or ():
        changes[name] = None
    if not changes:
        print("receiver: nothing to change: give one of the options (see --help)", file=sys.stderr)
        return 2
    settings = configured()
    destinations = Destinations.of(settings.handler_allowed_networks, *settings.database_urls)

    async def update(conn: Connection) -> int:
        try:
            handler = await update_handler(conn, args.id, changes, destinations)
        except HandlerError as error:
            print(f"receiver: {error}", file=sys.stderr)
            return 2
        if handler is None:
            print(f"receiver: no handler {args.id}", file=sys.stderr)
            return 1
        print(_json(handler.to_json()))
        if args.generate_secret:
            print(f"secret (shown once, give it to the handler): {changes['secret']}")
        return 0

    return run_with_connection(update)


def handlers_rotate_secret(args: argparse.Namespace) -> int:
    """A new secret; the old one signs beside it for the overlap."""

    async def rotate(conn: Connection) -> int:
        rotated = await rotate_secret(conn, args.id, args.overlap.total_seconds())
        if rotated is None:
            print(f"receiver: no handler {args.id}", file=sys.stderr)
            return 1
        handler, secret = rotated
        print(_json(handler.to_json()))
        print(f"secret (shown once, give it to the handler): {secret}")
        if handler.previous_secret_until is not None:
            print(
                f"until {handler.previous_secret_until.isoformat()} each forward carries the"
                " signatures of both secrets; after it, the new one's alone"
            )
        return 0

    return run_with_connection(rotate)


def _events(text: str) -> tuple[str, ...]:
    return tuple(e.strip() for e in text.split(",") if e.strip())


def statuses(text: str) -> tuple[int, ...]:
    """An argument type: comma-separated HTTP statuses, such as 400,422."""
    try:
        found = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of HTTP statuses such as 400,422"
        ) from None
    return found


_HANDLER_COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("user_data", "user_data"),
    ("default", "default"),
    ("url", "url"),
    ("enabled", "enabled"),
    ("failing since (UTC)", "failing_since"),
    ("disabled because", "disabled_reason"),
    ("created (UTC)", "created_at"),
]


def handlers_list(args: argparse.Namespace) -> int:
    """Print every handler: a table, or (--json) one JSON object a line."""

    async def show(conn: Connection) -> int:
        rows = [handler.to_json() for handler in await list_handlers(conn)]
        print_listing(rows, _HANDLER_COLUMNS, as_json=args.json, nothing="no handler")
        return 0

    return run_with_connection(show)


def handlers_remove(args: argparse.Namespace) -> int:
    """Remove a handler; its undelivered forwards are routed again."""

    async def remove(conn: Connection) -> int:
        if await remove_handler(conn, args.id):
            return 0
        print(f"receiver: no handler {args.id}", file=sys.stderr)
        return 1

    return run_with_connection(remove)


def handlers_toggle(args: argparse.Namespace) -> int:
    """Enable or disable a handler."""

    async def toggle(conn: Connection) -> int:
        handler = await set_enabled(conn, args.id, enabled=args.enabled)
        if handler is None:
            print(f"receiver: no handler {args.id}", file=sys.stderr)
            return 1
        print(_json(handler.to_json()))
        return 0

    return run_with_connection(toggle)


def _json(document: dict[str, object]) -> str:
    return orjson.dumps(document, default=str).decode()


def add_handler_commands(commands: Commands) -> None:
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
    _policy_options(add)
    add.set_defaults(run=handlers_add)
    update = sub.add_parser(
        "update", help="change a handler in place (its id, user_data and forwards kept)"
    )
    update.add_argument("id", type=int)
    update.add_argument("--url", help="where its forwards are posted")
    new_secrets = update.add_mutually_exclusive_group()
    new_secrets.add_argument("--secret", help="a Standard Webhooks secret (whsec_...)")
    new_secrets.add_argument(
        "--generate-secret", action="store_true", help="make a secret and print it once"
    )
    update.add_argument("--timeout", type=float, help="seconds per attempt")
    update.add_argument("--events", help="replies, status, or both (comma-separated)")
    update.add_argument("--status-filter", choices=("all", "terminal"))
    _policy_options(update)
    update.add_argument(
        "--clear",
        action="append",
        choices=(
            "final_statuses",
            "max_in_flight",
            "rate",
            "attempts",
            "first_retry",
            "notify_url",
            "secret",
            "name",
        ),
        help="set a field back to its default (repeatable)",
    )
    update.set_defaults(run=handlers_update)
    rotate = sub.add_parser(
        "rotate-secret",
        help="a new signing secret; the old one signs beside it for the overlap",
    )
    rotate.add_argument("id", type=int)
    rotate.add_argument(
        "--overlap",
        type=duration,
        default=timedelta(hours=24),
        help="how long forwards carry both signatures (default 24h)",
    )
    rotate.set_defaults(run=handlers_rotate_secret)
    handlers_listing = sub.add_parser("list", help="list the handlers")
    add_json_flag(handlers_listing)
    handlers_listing.set_defaults(run=handlers_list)
    for name, helptext, handler, extra in (
        ("remove", "remove a handler", handlers_remove, {}),
        ("disable", "stop forwarding to a handler", handlers_toggle, {"enabled": False}),
        ("enable", "forward to a handler again", handlers_toggle, {"enabled": True}),
    ):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("id", type=int)
        command.set_defaults(run=handler, **extra)


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="what people call it (unique), shown instead of its number")
    parser.add_argument(
        "--final-statuses",
        type=statuses,
        help="HTTP statuses that end a forward at once (none by default: every answer but a"
        " 2xx is tried again, and 410 disables the handler)",
    )
    parser.add_argument(
        "--max-in-flight", type=int, help="requests in flight to it at once, every dispatcher"
    )
    parser.add_argument("--rate", type=float, help="requests a second at most")
    parser.add_argument("--attempts", type=int, help="attempts of a forward (default 12)")
    parser.add_argument(
        "--first-retry",
        type=float,
        help="seconds before the second attempt, doubling after (default 40)",
    )
    parser.add_argument(
        "--notify-url",
        help="where the owning team hears of the handler's health: failing, disabled,"
        " recovered (a signed JSON notice)",
    )
