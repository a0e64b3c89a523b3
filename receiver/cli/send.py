"""`receiver send`: send an SMS through the receiver from the shell (as POST /api/v1/sms)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import timedelta

import orjson

from receiver.callr.gsm import ENCODINGS
from receiver.callr.sends import SendState
from receiver.cli.arguments import Commands, whole
from receiver.cli.listing import add_json_flag, print_listing
from receiver.cli.replay import run_with_database
from receiver.db.engine import Pool
from receiver.sending.requests import (
    NATURES,
    OWNER_CLI,
    WITH_BILLED,
    Conflict,
    Invalid,
    find,
    read_key,
    read_request,
    request_send,
    view,
)
from receiver.settings import Settings

_DECIDED = ("accepted", "rejected", "unknown")


def send(args: argparse.Namespace) -> int:
    """Make the send durable and print it as JSON; `--wait` follows it until decided."""

    async def run(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        api = settings.sending_api
        if api is None:
            print(
                "receiver send: sending is not configured: set RECEIVER_CALLR_API_LOGIN and"
                " RECEIVER_CALLR_API_PASSWORD, or RECEIVER_CALLR_API_KEY",
                file=sys.stderr,
            )
            return 2
        document = {
            "to": args.to,
            "text": args.text,
            "from": args.sender,
            "user_data": args.user_data,
            "nature": args.nature,
            "encoding": args.encoding,
        }
        try:
            wanted = read_request({k: v for k, v in document.items() if v is not None}, api=api)
            key = read_key(args.idempotency_key)
            async with pool.acquire() as conn:
                row, new = await request_send(
                    conn,
                    wanted,
                    api=api,
                    key=key,
                    stop_number=settings.callr_stop_number,
                    owner=OWNER_CLI,
                    source="receiver send",
                    routing_window=timedelta(hours=settings.routing_window_hours),
                )
        except (Invalid, Conflict) as error:
            print(f"receiver send: {error}", file=sys.stderr)
            return 2
        print(
            f"send {row['id']} {'queued' if new else 'found by its key'}: a running serve or"
            " worker sends it",
            file=sys.stderr,
        )
        deadline = time.monotonic() + args.wait
        while row["state"] not in _DECIDED and time.monotonic() < deadline and not stop.is_set():
            await asyncio.sleep(0.2)
            async with pool.acquire() as conn:
                row = await find(conn, row["id"])
        print(orjson.dumps(view(row), option=orjson.OPT_INDENT_2).decode())
        return 0 if row["state"] != "rejected" else 1

    return run_with_database(run, connections=1)


_SEND_COLUMNS = [
    ("id", "id"),
    ("state", "state"),
    ("to", "to"),
    ("user_data", "user_data"),
    ("attempts", "attempts"),
    ("sms", "sms_id"),
    ("requested (UTC)", "requested_at"),
    ("decided (UTC)", "decided_at"),
    ("error", "error"),
]
_LIST_SENDS = (
    WITH_BILLED
    + """
WHERE $1::text IS NULL OR s.state = $1
ORDER BY s.requested_at DESC, s.id DESC LIMIT $2
"""
)


def sends_list(args: argparse.Namespace) -> int:
    """Print sends (newest first), optionally of one state: a table, or (--json) one
    JSON object a line, each as `GET /api/v1/sms/{id}` shows it."""

    async def show(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        async with pool.acquire() as conn:
            rows = await conn.fetch(_LIST_SENDS, args.state, args.limit)
        print_listing(
            [view(row) for row in rows], _SEND_COLUMNS, as_json=args.json, nothing="no send"
        )
        return 0

    return run_with_database(show, connections=1)


def add_sends_commands(commands: Commands) -> None:
    sends = commands.add_parser("sends", help="the SMS sent through the receiver (listed)")
    sub = sends.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="list sends, newest first")
    listing.add_argument(
        "--state", choices=[state.value for state in SendState], help="only this state"
    )
    listing.add_argument("--limit", type=whole(1, 10_000), default=100, help="at most this many")
    add_json_flag(listing)
    listing.set_defaults(run=sends_list)


def add_send_command(commands: Commands) -> None:
    parser = commands.add_parser(
        "send", help="send an SMS through the receiver (durable, never twice)"
    )
    parser.add_argument("--to", required=True, help="the number, in E.164 form (+33612345678)")
    parser.add_argument("--text", required=True, help="the text, 1 to 3,200 characters")
    parser.add_argument("--from", dest="sender", help="the sender (CALLR's rules)")
    parser.add_argument("--user-data", help="your own string; replies route by it")
    parser.add_argument("--nature", choices=NATURES, help="alerting or marketing")
    parser.add_argument("--encoding", choices=ENCODINGS, help="force gsm or unicode")
    parser.add_argument(
        "--idempotency-key", help="the same key again finds the same send, never a second SMS"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for CALLR's answer before printing the send",
    )
    parser.set_defaults(run=send)
