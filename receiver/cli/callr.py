"""`receiver callr ...`: subscribe, subscriptions, reconcile, backfill (docs/callr-api.md)."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, timedelta

from receiver.callr.api import CallrApiError
from receiver.cli.arguments import Commands, http_url, timestamp, whole
from receiver.cli.progress import Progress
from receiver.cli.replay import run_with_database
from receiver.db.engine import Pool
from receiver.replay.callr import (
    DEFAULT_TYPES,
    api_client,
    backfill,
    reconcile,
    slices,
    subscribe,
    subscriptions,
)
from receiver.settings import Settings, parse_duration

_TYPE = re.compile(r"[a-z0-9_.]{1,64}")


def duration(text: str) -> timedelta:
    """An argument type: `90s`, `15m`, `12h`, `1d` (above zero)."""
    try:
        value = parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    return value


def event_types(text: str) -> tuple[str, ...]:
    """An argument type: comma-separated CALLR event types."""
    types = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [t for t in types if not _TYPE.fullmatch(t)]
    if not types or bad:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of event types such as sms.mt.status_update,sms.mo"
        )
    v2 = [t for t in types if t.startswith("v2.")]
    if v2:
        # CALLR's v2 page: v2 webhooks are made in its portal (Webhooks, Create), not
        # through the JSON-RPC webhooks.subscribe.
        raise argparse.ArgumentTypeError(
            f"{', '.join(v2)}: v2 events are subscribed to in CALLR's portal (Webhooks, then"
            " Create, with the receiver's URL), not through webhooks.subscribe"
        )
    return types


def _fail(command: str, error: CallrApiError) -> int:
    print(f"receiver callr {command}: {error}", file=sys.stderr)
    return 1


def subscribe_command(args: argparse.Namespace) -> int:
    async def run(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        options = None
        if settings.callr_hmac_secrets:
            # CALLR signs what it sends with the first secret (the others are old ones).
            options = {
                "hmac_secret": settings.callr_hmac_secrets[0],
                "hmac_algo": settings.callr_hmac_algorithm.upper(),
            }
        try:
            async with api_client(settings, pool) as api:
                made = await subscribe(pool, api, url=args.url, types=args.types, options=options)
        except CallrApiError as error:
            return _fail("subscribe", error)
        for hook in made:
            print(f"{hook['hash']}  {hook['type']}  {hook['endpoint']}")
        signed = "signed with RECEIVER_CALLR_HMAC_SECRETS" if options else "not signed"
        print(f"{len(made)} subscription(s) made and kept ({signed})")
        return 0

    return run_with_database(run, connections=2)


def subscriptions_command(args: argparse.Namespace) -> int:
    async def run(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        rows = await subscriptions(pool)
        for row in rows:
            made = row["created_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{row['hash']}  {row['type']:<22} {made}Z  {row['endpoint']}")
        print(f"{len(rows)} subscription(s) made by `receiver callr subscribe`")
        return 0

    return run_with_database(run, connections=2)


def reconcile_command(args: argparse.Namespace) -> int:
    async def run(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        older_than = args.older_than or settings.reconcile_after
        window = timedelta(hours=settings.routing_window_hours)
        try:
            if args.dry_run:
                # No credentials needed to see what would be asked.
                summary = await reconcile(
                    pool,
                    None,
                    older_than=older_than,
                    limit=args.limit,
                    routing_window=window,
                    dry_run=True,
                )
                for sms_id in summary.candidates:
                    print(sms_id)
                print(f"{len(summary.candidates)} SMS would be asked of CALLR; nothing was changed")
                return 0
            async with api_client(settings, pool) as api:
                summary = await reconcile(
                    pool, api, older_than=older_than, limit=args.limit, routing_window=window
                )
        except CallrApiError as error:
            return _fail("reconcile", error)
        print(
            f"{len(summary.candidates)} SMS asked: {summary.changed} with news,"
            f" {summary.unchanged} as before, {summary.unknown} unknown to CALLR"
        )
        return 0

    return run_with_database(run, connections=2)


def backfill_command(args: argparse.Namespace) -> int:
    if args.since >= args.until:
        print("receiver callr backfill: --since must be before --until", file=sys.stderr)
        return 2
    directions = {"out": ("OUT",), "in": ("IN",), None: ("OUT", "IN")}[args.direction]

    async def run(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        total = len(slices(args.since, args.until, args.slice))
        try:
            async with api_client(settings, pool) as api:
                with Progress(total, label="backfill", unit="slice") as progress:
                    summary = await backfill(
                        pool,
                        api,
                        since=args.since,
                        until=args.until,
                        directions=directions,
                        size=args.slice,
                        forward=args.forward,
                        routing_window=timedelta(hours=settings.routing_window_hours),
                        advance=progress.advance,
                    )
        except CallrApiError as error:
            return _fail("backfill", error)
        forwarded = "" if args.forward else " (replies not forwarded)"
        print(f"{summary.listed} SMS listed by CALLR, {summary.new} new to the receiver{forwarded}")
        return 0

    return run_with_database(run, connections=2)


def add_callr_commands(commands: Commands) -> None:
    callr = commands.add_parser("callr", help="ask CALLR's API: subscribe, reconcile, backfill")
    actions = callr.add_subparsers(title="callr commands", dest="callr_command", required=True)

    subscribing = actions.add_parser(
        "subscribe", help="subscribe this receiver to CALLR's webhooks"
    )
    subscribing.add_argument(
        "--url", type=http_url, required=True, help="the receiver's public webhook URL"
    )
    subscribing.add_argument(
        "--types",
        type=event_types,
        default=DEFAULT_TYPES,
        help="comma-separated v1 event types (default sms.mt.status_update,sms.mo); v2"
        " events are subscribed to in CALLR's portal",
    )
    subscribing.set_defaults(run=subscribe_command)

    listing = actions.add_parser("subscriptions", help="the subscriptions `subscribe` made")
    listing.set_defaults(run=subscriptions_command)

    reconciling = actions.add_parser(
        "reconcile", help="ask CALLR for outbound SMS stuck in a non-final status"
    )
    reconciling.add_argument(
        "--older-than",
        type=duration,
        help="stuck for longer than (default RECEIVER_RECONCILE_AFTER)",
    )
    reconciling.add_argument("--limit", type=whole(1, 1_000_000), default=1000, help="SMS at most")
    reconciling.add_argument("--dry-run", action="store_true", help="list them, ask nothing")
    reconciling.set_defaults(run=reconcile_command)

    filling = actions.add_parser("backfill", help="store the SMS CALLR lists for a window")
    filling.add_argument("--since", type=timestamp, required=True, help="ISO 8601, UTC if no zone")
    filling.add_argument("--until", type=timestamp, required=True, help="ISO 8601, UTC if no zone")
    filling.add_argument("--direction", choices=("in", "out"), help="one direction (default both)")
    filling.add_argument(
        "--slice", type=duration, default=timedelta(hours=1), help="window of one request (1h)"
    )
    filling.add_argument(
        "--no-forward",
        dest="forward",
        action="store_false",
        help="do not forward the replies found (a historical import)",
    )
    filling.set_defaults(run=backfill_command)
