"""The commands over stored events: `replay` (and `--dry-run`, `--to URL`), `rebuild`, `prune`."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver import heap
from receiver.cli.arguments import Commands, above_zero, configured, http_url, timestamp, whole
from receiver.cli.database import open_migrated_database
from receiver.cli.progress import Progress
from receiver.db.engine import Pool, create_pool
from receiver.replay import EventFilter, RebuildRefused, count, rebuild, replay
from receiver.replay.resend import resend
from receiver.replay.retention import count as count_prunable
from receiver.replay.retention import prune
from receiver.replay.workers import RangeWorkers, WorkerFailed
from receiver.settings import Settings

STATES = ("processed", "unhandled", "invalid")
# The exit code of a command stopped by Ctrl-C, as shells report it.
STOPPED = 130


def replay_command(args: argparse.Namespace) -> int:
    """Run the current code over stored events, or count them, or send them elsewhere."""
    if args.since is not None and args.until is not None and args.since >= args.until:
        print("receiver replay: --since must be before --until", file=sys.stderr)
        return 2
    selection = EventFilter(
        since=args.since,
        until=args.until,
        types=tuple(args.type or ()),
        event_id=args.event_id,
        sms_id=args.sms_id,
        states=tuple(args.state or ()),
    )

    async def run(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        async with pool.acquire() as conn:
            counts = await count(conn, selection)
        total = sum(n for _, _, n in counts)
        if args.dry_run:
            for event_type, state, n in counts:
                print(f"{n:>10}  {state:<10} {event_type or '(no type)'}")
            print(f"{total:>10}  events would be replayed; nothing was changed")
            return 0
        if args.to:
            with Progress(total, label="resend") as progress:
                sent = await resend(
                    pool,
                    selection,
                    args.to,
                    concurrency=args.concurrency,
                    rate=args.rate,
                    advance=progress.advance,
                    stop=stop,
                )
            print(sent.line())
            if sent.stopped:
                return STOPPED
            # Events the other receiver did not take (no answer, or a 5xx) fail the command.
            return 1 if sent.not_taken else 0
        with Progress(total, label="replay") as progress:
            summary = await replay(
                pool,
                selection,
                batch=args.batch,
                routing_window=timedelta(hours=settings.routing_window_hours),
                advance=progress.advance,
                stop=stop,
                total=total,
            )
        print(summary.line())
        return STOPPED if summary.stopped else 0

    return run_with_database(run)


def rebuild_command(args: argparse.Namespace) -> int:
    """Rebuild the message records and history from every stored event, beside the live
    ones, and put them in place in one transaction at the end."""
    # Forked now, before this process has an event loop or a connection to share.
    workers = RangeWorkers(args.jobs)

    async def run(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        assert settings.database_url is not None  # the database opened for this command
        workers.use(
            settings.database_url, batch=args.batch, command_timeout=_command_timeout(settings)
        )
        async with pool.acquire() as conn:
            total = sum(n for _, _, n in await count(conn, EventFilter()))
        try:
            with Progress(total, label="rebuild") as progress:
                summary = await rebuild(
                    pool,
                    batch=args.batch,
                    jobs=args.jobs,
                    advance=progress.advance,
                    stop=stop,
                    total=total,
                    workers=workers,
                )
        except (RebuildRefused, WorkerFailed) as error:
            print(f"receiver rebuild: {error}", file=sys.stderr)
            return 1
        print(summary.line().replace("replayed", "rebuilt from", 1))
        if summary.stopped:
            print("the live records are as they were: nothing was swapped in")
        else:
            print(
                f"the new records put in place in {summary.swap_seconds:.1f} s (with the"
                f" {summary.tail} events stored since just before the start)"
            )
        return STOPPED if summary.stopped else 0

    try:
        return run_with_database(run)
    finally:
        workers.close()


def prune_command(args: argparse.Namespace) -> int:
    """Remove raw events and their deliveries older than the retention period."""
    before = datetime.now(UTC) - args.events_older_than

    async def run(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        async with pool.acquire() as conn:
            planned = await count_prunable(conn, before)
        if args.dry_run:
            print(planned.line(dry_run=True))
            return 0
        with Progress(planned.events, label="prune") as progress:
            done = await prune(pool, before, batch=args.batch, advance=progress.advance, stop=stop)
        print(done.line())
        return STOPPED if done.stopped else 0

    return run_with_database(run)


_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_UNITS["w"] = 7 * _UNITS["d"]


def age(text: str) -> timedelta:
    """`90d`, `36h`, `2w` or `30m`."""
    match = re.fullmatch(r"(\d+)([mhdw])", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age: a whole number and a unit, m, h, d or w (90d)"
        )
    value = int(match.group(1)) * _UNITS[match.group(2)]
    if value < _YOUNGEST_PRUNE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is too recent: a pruned event is no longer recognised as a repeat,"
            " and CALLR may still be retrying it; keep at least 1d"
        )
    return value


# Events younger than this are never pruned: deduplication needs them while CALLR
# may still retry (it does not publish for how long).
_YOUNGEST_PRUNE = timedelta(days=1)


def run_with_database(
    command: Callable[[Any, Settings, asyncio.Event], Awaitable[int]], *, connections: int = 4
) -> int:
    """Run `command(pool, settings, stop)` on the migrated database; Ctrl-C sets `stop`."""
    settings = configured()
    database = open_migrated_database(settings)
    # A command's connections are its own sessions, on the server itself.
    settings = settings.model_copy(
        update={"database_url": database.session, "direct_database_url": None}
    )

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Stop after the page in hand: what is committed stays, a rerun finishes.
            loop.add_signal_handler(signum, stop.set)
        pool = await create_pool(
            database.session,
            size=connections,
            command_timeout=_command_timeout(settings),
        )
        heap.settle_after_startup()
        try:
            return await command(pool, settings, stop)
        finally:
            await pool.close()

    return asyncio.run(main())


def _command_timeout(settings: Settings) -> float:
    """Long commands run statements over whole pages: at least five minutes each."""
    return max(settings.db_command_timeout, 300)


# Jobs and resend concurrency hold connections or sockets each: bounded.
positive = whole(1, 16)
_CONCURRENCY = whole(1, 256)
# Events a transaction: 0 would make no progress; a page holds its events in memory,
# hence the upper bound.
_BATCH = whole(1, 100_000)


def add_replay_commands(commands: Commands) -> None:
    replaying = commands.add_parser(
        "replay", help="run the current code over stored events (or --to URL: resend them)"
    )
    replaying.add_argument("--since", type=timestamp, help="received at or after (ISO 8601)")
    replaying.add_argument("--until", type=timestamp, help="received before (ISO 8601)")
    replaying.add_argument("--type", action="append", help="event type (repeatable)")
    replaying.add_argument("--event", "--event-id", dest="event_id", help="one event, by its id")
    replaying.add_argument("--sms-id", help="the events of one SMS")
    replaying.add_argument("--state", action="append", choices=STATES, help="(repeatable)")
    replaying.add_argument("--dry-run", action="store_true", help="count, change nothing")
    replaying.add_argument("--batch", type=_BATCH, default=1000, help="events per transaction")
    replaying.add_argument(
        "--to", type=http_url, help="resend the raw events to this receiver URL instead"
    )
    replaying.add_argument("--concurrency", type=_CONCURRENCY, default=8, help="with --to")
    replaying.add_argument(
        "--rate", type=above_zero("events a second"), help="with --to: at most this many per second"
    )
    replaying.set_defaults(run=replay_command)
    rebuilding = commands.add_parser(
        "rebuild",
        help="rebuild the message records and history from the events, and swap them in",
    )
    rebuilding.add_argument("--batch", type=_BATCH, default=4000, help="events per transaction")
    rebuilding.add_argument(
        "--jobs",
        type=positive,
        default=2,
        help="ranges of SMS rebuilt at once (default 2; 1 rebuilds them one after another)",
    )
    rebuilding.set_defaults(run=rebuild_command)
    pruning = commands.add_parser(
        "prune", help="remove raw events and deliveries older than the retention period"
    )
    pruning.add_argument(
        "--events-older-than", type=age, required=True, metavar="AGE", help="90d, 36h, 2w"
    )
    pruning.add_argument("--dry-run", action="store_true", help="count, change nothing")
    pruning.add_argument("--batch", type=_BATCH, default=5000, help="events per transaction")
    pruning.set_defaults(run=prune_command)
