"""`receiver forwards`: the replies and status changes forwarded to handlers (listed,
sent again, routed once a handler is there)."""

from __future__ import annotations

import argparse

from receiver.cli.arguments import Commands, timestamp, whole
from receiver.cli.forwarding import run_with_connection
from receiver.cli.listing import add_json_flag, print_listing
from receiver.db.engine import Connection
from receiver.db.models import ForwardState
from receiver.forwarding.outbox import RETRYABLE_STATES, ForwardFilter, retry_forwards
from receiver.forwarding.routing import route_unrouted

_FORWARD_COLUMNS = [
    ("id", "id"),
    ("state", "state"),
    ("attempts", "attempts"),
    ("handler", "handler_id"),
    ("sms", "sms_id"),
    ("user_data", "user_data"),
    ("created (UTC)", "created_at"),
    ("last error", "last_error"),
]


def forwards_route_pending(args: argparse.Namespace) -> int:
    """Route the forwards that were waiting for a handler."""

    async def route(conn: Connection) -> int:
        print(f"{await route_unrouted(conn)} forward(s) routed")
        return 0

    return run_with_connection(route)


def forwards_retry(args: argparse.Namespace) -> int:
    """Queue forwards (dead ones by default) for delivery now."""
    selection = ForwardFilter(
        state=args.state,
        handler_id=args.handler_id,
        since=args.since,
        until=args.until,
        event_id=args.event_id,
    )

    async def retry(conn: Connection) -> int:
        print(f"{await retry_forwards(conn, selection)} forward(s) queued")
        return 0

    return run_with_connection(retry)


def forwards_list(args: argparse.Namespace) -> int:
    """Print forwards (newest first), optionally of one state: a table, or (--json) one
    JSON object a line."""

    async def show(conn: Connection) -> int:
        rows = await conn.fetch(
            "SELECT id, event_id, sms_id, handler_id, rule, user_data, state, attempts,"
            " next_attempt_at, created_at, delivered_at, last_error FROM forwards"
            " WHERE $1::text IS NULL OR state = $1 ORDER BY id DESC LIMIT $2",
            args.state,
            args.limit,
        )
        print_listing(
            [dict(row) for row in rows], _FORWARD_COLUMNS, as_json=args.json, nothing="no forward"
        )
        return 0

    return run_with_connection(show)


def add_forward_commands(commands: Commands) -> None:
    forwards = commands.add_parser("forwards", help="the replies forwarded to handlers")
    sub = forwards.add_subparsers(dest="action", required=True)
    route = sub.add_parser("route-pending", help="route the forwards waiting for a handler")
    route.set_defaults(run=forwards_route_pending)
    listing = sub.add_parser("list", help="list forwards, newest first")
    listing.add_argument(
        "--state", choices=[state.value for state in ForwardState], help="only this state"
    )
    listing.add_argument("--limit", type=whole(1, 10_000), default=100, help="at most this many")
    add_json_flag(listing)
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
