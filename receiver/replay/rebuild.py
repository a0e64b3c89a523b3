"""Rebuild: the projection made again from every stored event, under live traffic.

Rebuild projects every event again, without routing (forwards are delivery
records, kept as they are), into empty tables of their own (the schema
`receiver_rebuild`: messages, transitions, observations, sends), while the live
tables go on serving reads and the projector goes on applying new events to them.
At the end, one transaction locks the live tables, applies again the events stored
since the rebuild began (less `TAIL_MARGIN`, for an answer stamped before it and
committed after), and puts the new rows in place of the old. Until that
transaction commits the live records are as they were: a rebuild that fails, is
stopped or killed leaves them whole, and the next run starts its tables afresh.
An event that is both replayed and projected is applied twice, which writes
nothing the first time did not: every row the projection writes is a union of
evidence or its greatest or least value. Nothing is lost and nothing is counted
twice (tests/test_replay.py, rebuild under live ingest).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Protocol

import asyncpg

from receiver.db.engine import Connection, Pool, one_row
from receiver.replay.paging import (
    _PAGE_UNTIED,
    PAGE_BY_SMS_SQL,
    PAGE_SQL,
    EventFilter,
    Page,
    Pager,
    _by_received,
    by_sms,
    parse_row,
    split_points,
)
from receiver.replay.replay import (
    REBUILT,
    SEARCH_SHADOW,
    SHADOW,
    ReplaySummary,
    StopFlag,
    apply_page,
    replay,
)

# Events stamped this long before the rebuild began are applied again at the swap: an
# event's transaction commits within seconds of its stamp (the writer's statements end
# within RECEIVER_DB_COMMAND_TIMEOUT, 10 s by default; the receiver's own events are
# stamped in their transaction).
TAIL_MARGIN = timedelta(minutes=1)


_COPY_COLUMNS = """
SELECT column_name, is_identity = 'YES' AS identity FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position
"""


class RangeReplayers(Protocol):
    """Replays ranges of SMS ids elsewhere (receiver.replay.workers: in child processes)."""

    async def replay(
        self,
        ranges: Sequence[tuple[str | None, str | None]],
        *,
        advance: Callable[[int], None],
        stop: StopFlag | None,
    ) -> list[ReplaySummary]: ...


class RebuildRefused(Exception):
    """A rebuild that would lose message records: their events were pruned."""


async def rebuild(
    pool: Pool,
    *,
    batch: int = 4000,
    jobs: int = 2,
    advance: Callable[[int], None] = lambda n: None,
    stop: StopFlag | None = None,
    total: int | None = None,
    workers: RangeReplayers | None = None,
) -> ReplaySummary:
    """Project every stored event again into new message records, history and evidence,
    and put them in place of the old in one transaction (see the module's doc).

    `jobs`: how many ranges of SMS ids are replayed at once. The ranges share no
    SMS, so their transactions never wait for each other. They are replayed on
    this process's connections, or each in a child process of `workers` (what the
    command does: see receiver/replay/workers.py).
    """
    if batch < 1:
        # Checked before the tables are emptied: no page could refill them.
        raise ValueError(f"a rebuild needs a batch of at least 1 event, not {batch}")
    async with pool.acquire() as conn:
        pruned = await one_row(conn, "SELECT max(before) AS before FROM prunes")
        if pruned["before"] is not None:
            raise RebuildRefused(
                f"events received before {pruned['before'].isoformat()} were pruned: a rebuild"
                " would drop the messages they made. `receiver replay` re-runs the current"
                " code over the events that remain and keeps the rest."
            )
        started = await conn.fetchval("SELECT now()")
        await _make_shadow(conn)
        cuts = await split_points(conn, jobs)
    # Events not yet tied to an SMS (not SMS events, or stored before the column
    # existed) in the order received; then every SMS's events together, so that
    # each message row is written once and repeated history is merged in the batch.
    # The projection does not depend on the order, so the result is the same.
    bounds = [None, *cuts, None]
    ranges = list(pairwise(bounds))
    summary = ReplaySummary()
    parts = [
        await _replay_all(
            pool, Pager(_PAGE_UNTIED, (), _by_received, (None, None)), batch, advance, stop
        )
    ]
    if workers is not None:
        parts += await workers.replay(ranges, advance=advance, stop=stop)
    else:
        parts += await asyncio.gather(
            *(
                replay_range(pool, bounds, batch=batch, advance=advance, stop=stop)
                for bounds in ranges
            )
        )
    for part in parts:
        summary.replayed += part.replayed
        summary.changed += part.changed
        summary.reingested += part.reingested
        summary.parked += part.parked
        for state, n in part.by_state.items():
            summary.by_state[state] = summary.by_state.get(state, 0) + n
    summary.total = total if total is not None else summary.replayed
    summary.stopped = stop is not None and stop.is_set()
    if not summary.stopped:
        began = time.perf_counter()
        tail = await _swap(pool, started - TAIL_MARGIN, batch)
        summary.swap_seconds = time.perf_counter() - began
        summary.parked += tail.parked
        summary.tail = tail.replayed
    return summary


async def _make_shadow(conn: Connection) -> None:
    """Empty tables shaped like the live records, for a rebuild to write into (those of an
    unfinished rebuild are dropped)."""
    async with conn.transaction():
        await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE")
        await conn.execute(f"CREATE SCHEMA {SHADOW}")
        for table in REBUILT:
            await conn.execute(f"CREATE TABLE {SHADOW}.{table} (LIKE public.{table} INCLUDING ALL)")


async def _swap(pool: Pool, since: datetime, batch: int) -> ReplaySummary:
    """Put the rebuilt records in place of the live ones, in one transaction; what the tail
    did (how many events, how many could not be applied). Tried again when it meets a
    deadlock (another transaction held one of the tables and waited for another)."""
    for attempt in range(_SWAP_TRIES):
        try:
            async with pool.acquire() as conn:
                tail = await _swap_once(conn, since, batch)
                await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE")
                return tail
        except asyncpg.exceptions.DeadlockDetectedError:
            if attempt == _SWAP_TRIES - 1:
                raise
            await asyncio.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")


_SWAP_TRIES = 5


async def _swap_once(conn: Connection, since: datetime, batch: int) -> ReplaySummary:
    """The swap's transaction. The live tables are locked (the projector and the reads
    of records wait), the events stored since `since` applied again to the rebuilt
    tables (the projector applied them to the live ones meanwhile), then the rows
    copied over. What senders hold is in `send_claims`, which a rebuild leaves alone:
    the rebuilt sends are their steps' exactly."""
    summary = ReplaySummary()
    async with conn.transaction():
        await conn.execute(
            f"LOCK TABLE {', '.join(REBUILT)}, stats_rows, stats_days IN ACCESS EXCLUSIVE MODE"
        )
        await conn.execute(SEARCH_SHADOW)
        selection = EventFilter(since=since)
        after: tuple[object, ...] = (None, None)
        while rows := await conn.fetch(PAGE_SQL, *selection.arguments(), *after, batch):
            page = Page(rows, [parse_row(row) for row in rows])
            await apply_page(conn, page, summary, routing_window=None)
            summary.replayed += len(rows)
            after = _by_received(rows[-1])
        await conn.execute("SET LOCAL search_path TO public")
        # The days kept for the statistics go: they are computed again when asked for.
        await conn.execute(f"TRUNCATE stats_rows, stats_days, {', '.join(REBUILT)}")
        for table in REBUILT:
            await conn.execute(await _copy_statement(conn, table))
    return summary


async def _copy_statement(conn: Connection, table: str) -> str:
    """The rebuilt rows of `table` into the live one; an identity column takes the live
    table's next values, in the rebuilt rows' order."""
    found = await conn.fetch(_COPY_COLUMNS, table)
    kept = ", ".join(row["column_name"] for row in found if not row["identity"])
    order = [row["column_name"] for row in found if row["identity"]]
    ordered = f" ORDER BY {', '.join(order)}" if order else ""
    return f"INSERT INTO public.{table} ({kept}) SELECT {kept} FROM {SHADOW}.{table}{ordered}"


async def replay_range(
    pool: Pool,
    bounds: tuple[str | None, str | None],
    *,
    batch: int,
    advance: Callable[[int], None],
    stop: StopFlag | None,
) -> ReplaySummary:
    """Replay, without routing, the events of the SMS ids in [low, high) (None: unbounded),
    into a rebuild's tables."""
    pager = Pager(PAGE_BY_SMS_SQL, bounds, by_sms, (None, None, None))
    return await _replay_all(pool, pager, batch, advance, stop)


async def _replay_all(
    pool: Pool,
    pager: Pager,
    batch: int,
    advance: Callable[[int], None],
    stop: StopFlag | None,
) -> ReplaySummary:
    return await replay(
        pool,
        EventFilter(),
        batch=batch,
        routing_window=None,
        advance=advance,
        stop=stop,
        total=0,
        pager=pager,
        shadow=True,
    )
