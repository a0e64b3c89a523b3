"""Replay and rebuild: stored events through today's parsing, projection and routing.

Replay pages through the selected events in the order they were received, parses
each raw body again, records what the parse now says (state, type, reason), and
applies the same projection (and routing, for replies) as live ingest, one
transaction per page. The projection depends on the set of events only and
applying an event twice changes nothing, so a replay can be repeated, stopped and
run again, and can run while webhooks arrive.

Both apply events with the projector's code (receiver.projection), in their own
transactions, beside the projector that runs in every serve process.

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, Protocol

import asyncpg

from receiver.callr.envelope import Envelope, Malformed, parse_envelope
from receiver.callr.own import parse_stored
from receiver.db.arrays import columns
from receiver.db.engine import Connection, Pool, Record, one_row
from receiver.projection.apply import apply
from receiver.projection.store import Incoming, Result, event_state, store_batch, stored_reports
from receiver.reports import report_of

FILTER_SQL = """
    ($1::timestamptz IS NULL OR e.received_at >= $1)
    AND ($2::timestamptz IS NULL OR e.received_at < $2)
    AND (cardinality($3::text[]) = 0 OR e.type = ANY($3::text[]))
    AND ($4::text IS NULL OR e.event_id = $4)
    AND ($5::text IS NULL OR e.sms_id = $5)
    AND (cardinality($6::text[]) = 0 OR e.state = ANY($6::text[]))
"""

_COUNT = f"""
SELECT e.type, e.state, count(*) AS n FROM events e
WHERE {FILTER_SQL}
GROUP BY e.type, e.state ORDER BY e.type NULLS LAST, e.state
"""

_PAGE = f"""
SELECT e.event_id, e.body, e.received_at, e.state, e.type, e.emitted_at, e.reason, e.sms_id,
    e.own
FROM events e
WHERE {FILTER_SQL}
  AND ($7::timestamptz IS NULL OR (e.received_at, e.event_id) > ($7, $8::text))
ORDER BY e.received_at, e.event_id
LIMIT $9
"""

_COLUMNS = (
    "e.event_id, e.body, e.received_at, e.state, e.type, e.emitted_at, e.reason, e.sms_id, e.own"
)

_PAGE_UNTIED = f"""
SELECT {_COLUMNS} FROM events e
WHERE e.sms_id IS NULL
  AND ($1::timestamptz IS NULL OR (e.received_at, e.event_id) > ($1, $2::text))
ORDER BY e.received_at, e.event_id
LIMIT $3
"""

# The SMS of one range [$1, $2) (None: unbounded), each SMS's events together.
_PAGE_BY_SMS = f"""
SELECT {_COLUMNS} FROM events e
WHERE e.sms_id IS NOT NULL
  AND ($1::text IS NULL OR e.sms_id >= $1) AND ($2::text IS NULL OR e.sms_id < $2)
  AND ($3::text IS NULL OR (e.sms_id, e.received_at, e.event_id) > ($3, $4::timestamptz, $5))
ORDER BY e.sms_id, e.received_at, e.event_id
LIMIT $6
"""

# Where to cut the SMS ids into ranges of about as many events each.
_SPLIT_POINTS = """
SELECT DISTINCT unnest(percentile_disc($1::float8[]) WITHIN GROUP (ORDER BY sms_id)) AS cut
FROM events WHERE sms_id IS NOT NULL
ORDER BY cut
"""

_UPDATE_EVENTS = """
UPDATE events e SET state = u.state, type = u.type, emitted_at = u.emitted_at,
    reason = u.reason, sms_id = u.sms_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[])
    AS u(event_id, state, type, emitted_at, reason, sms_id)
WHERE e.event_id = u.event_id
"""

# Where a rebuild writes until it is done, and the tables it writes there.
SHADOW = "receiver_rebuild"
REBUILT = ("messages", "transitions", "observations", "sends")
# Events stamped this long before the rebuild began are applied again at the swap: an
# event's transaction commits within seconds of its stamp (the writer's statements end
# within RECEIVER_DB_COMMAND_TIMEOUT, 10 s by default; the receiver's own events are
# stamped in their transaction).
TAIL_MARGIN = timedelta(minutes=1)
_SEARCH_SHADOW = f"SET LOCAL search_path TO {SHADOW}, public"
_ANALYZE_AFTER = 20_000
_COPY_COLUMNS = """
SELECT column_name, is_identity = 'YES' AS identity FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position
"""


class StopFlag(Protocol):
    """Set to stop after the page in hand (an asyncio or a multiprocessing event)."""

    def is_set(self) -> bool: ...


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


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which stored events a replay takes; empty fields select everything."""

    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()
    event_id: str | None = None
    sms_id: str | None = None
    states: tuple[str, ...] = ()

    def arguments(self) -> list[Any]:
        return [
            self.since,
            self.until,
            list(self.types),
            self.event_id,
            self.sms_id.lower() if self.sms_id else None,
            list(self.states),
        ]


@dataclass
class ReplaySummary:
    """How far a replay got and what it changed."""

    total: int = 0
    replayed: int = 0
    changed: int = 0
    reingested: int = 0
    parked: int = 0
    """Events that could not be applied: kept as invalid, with the reason."""
    by_state: dict[str, int] = field(default_factory=dict)
    stopped: bool = False
    swap_seconds: float = 0.0
    """A rebuild's last transaction: the tail applied again and the records put in place."""
    tail: int = 0
    """The events a rebuild applied again in its last transaction."""

    def line(self) -> str:
        states = ", ".join(f"{n} {state}" for state, n in sorted(self.by_state.items()))
        head = f"replayed {self.replayed} of {self.total} events"
        tail = f" ({states}); {self.changed} changed state, {self.reingested} stored anew"
        if self.parked:
            tail += f"; {self.parked} could not be applied (kept as invalid, see their reason)"
        if self.stopped:
            tail += "; stopped early: run the same command again to finish (it is safe)"
        return head + tail


async def count(conn: Connection, selection: EventFilter) -> list[tuple[str | None, str, int]]:
    """How many stored events match, by type and state (what --dry-run prints)."""
    rows = await conn.fetch(_COUNT, *selection.arguments())
    return [(row["type"], row["state"], row["n"]) for row in rows]


async def replay(
    pool: Pool,
    selection: EventFilter,
    *,
    batch: int = 1000,
    routing_window: timedelta | None = timedelta(days=7),
    advance: Callable[[int], None] = lambda n: None,
    stop: StopFlag | None = None,
    total: int | None = None,
    pager: Pager | None = None,
    shadow: bool = False,
) -> ReplaySummary:
    """Replay the selected events page by page; stops cleanly after a page when `stop` is set.

    `routing_window` None leaves the forwards alone (what rebuild does); `total`
    is how many events match, when the caller has counted them already; `shadow`
    writes the records into a rebuild's tables (`SHADOW`) instead of the live ones.
    """
    summary = ReplaySummary(total=total or 0)
    if total is None:
        async with pool.acquire() as conn:
            summary.total = sum(n for _, _, n in await count(conn, selection))
    # Parsing is Python's work and applying is PostgreSQL's: the next page is read
    # and parsed while the current one is applied, so the two overlap.
    pages: asyncio.Queue[_Page | _ReadFailed | None] = asyncio.Queue(maxsize=2)
    reader = asyncio.create_task(
        _read_pages(pool, pager or _received_order(selection), batch, pages)
    )
    try:
        while not (stop is not None and stop.is_set()):
            page = await pages.get()
            if page is None:
                break
            if isinstance(page, _ReadFailed):
                raise page.error
            async with pool.acquire() as conn, conn.transaction():
                if shadow:
                    await conn.execute(_SEARCH_SHADOW)
                await _apply_page(conn, page, summary, routing_window=routing_window)
            if shadow and summary.replayed < _ANALYZE_AFTER <= summary.replayed + len(page.rows):
                # The new tables start with no statistics: the planner learns their
                # shape once their first pages are in.
                async with pool.acquire() as conn:
                    await conn.execute(f"ANALYZE {', '.join(f'{SHADOW}.{t}' for t in REBUILT)}")
            summary.replayed += len(page.rows)
            advance(len(page.rows))
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    summary.stopped = summary.replayed < summary.total and stop is not None and stop.is_set()
    return summary


@dataclass(frozen=True, slots=True)
class _Page:
    rows: Sequence[Any]
    parsed: Sequence[Envelope | Malformed]


@dataclass(frozen=True, slots=True)
class Pager:
    """How a replay pages: a statement whose last parameters are the position after the
    previous page and the page size, the position of a row, and the first position."""

    sql: str
    arguments: tuple[Any, ...]
    position: Callable[[Any], tuple[Any, ...]]
    start: tuple[Any, ...]


def _by_received(row: Record) -> tuple[Any, ...]:
    return (row["received_at"], row["event_id"])


def _by_sms(row: Record) -> tuple[Any, ...]:
    return (row["sms_id"], row["received_at"], row["event_id"])


def _received_order(selection: EventFilter) -> Pager:
    return Pager(_PAGE, tuple(selection.arguments()), _by_received, (None, None))


_PARSE_SLICE = 250


@dataclass(frozen=True, slots=True)
class _ReadFailed:
    """What the reader passes on instead of a page when it cannot read one."""

    error: Exception


async def _read_pages(
    pool: Pool, pager: Pager, batch: int, pages: asyncio.Queue[_Page | _ReadFailed | None]
) -> None:
    after = pager.start
    while True:
        try:
            async with pool.acquire() as conn:
                rows = await conn.fetch(pager.sql, *pager.arguments, *after, batch)
        except Exception as error:
            # Said to the replay waiting for the page, which raises it: without
            # this it would wait for ever.
            await pages.put(_ReadFailed(error))
            return
        if not rows:
            await pages.put(None)
            return
        parsed: list[Envelope | Malformed] = []
        for start in range(0, len(rows), _PARSE_SLICE):
            parsed += [_parse_row(row) for row in rows[start : start + _PARSE_SLICE]]
            # Let the loop hear from the database between slices: a whole page parsed
            # at once kept the other connections' results waiting (about 70 ms).
            await asyncio.sleep(0)
        await pages.put(_Page(rows, parsed))
        after = pager.position(rows[-1])


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
        cuts = await _split_points(conn, jobs)
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
    copied over. A send's lease (`next_at`, moved on by a sender that holds it) is kept
    where it is later than the rebuilt one."""
    summary = ReplaySummary()
    async with conn.transaction():
        await conn.execute(
            f"LOCK TABLE {', '.join(REBUILT)}, stats_rows, stats_days IN ACCESS EXCLUSIVE MODE"
        )
        await conn.execute(_SEARCH_SHADOW)
        selection = EventFilter(since=since)
        after: tuple[Any, ...] = (None, None)
        while rows := await conn.fetch(_PAGE, *selection.arguments(), *after, batch):
            page = _Page(rows, [_parse_row(row) for row in rows])
            await _apply_page(conn, page, summary, routing_window=None)
            summary.replayed += len(rows)
            after = _by_received(rows[-1])
        await conn.execute("SET LOCAL search_path TO public")
        await conn.execute(
            f"UPDATE {SHADOW}.sends s SET next_at = p.next_at FROM public.sends p"
            " WHERE s.id = p.id AND s.seq = p.seq AND p.next_at > s.next_at"
        )
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


def _parse_row(row: Record) -> Envelope | Malformed:
    return parse_stored(row["event_id"], row["type"], row["body"], own=row["own"])


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
    pager = Pager(_PAGE_BY_SMS, bounds, _by_sms, (None, None, None))
    return await _replay_all(pool, pager, batch, advance, stop)


async def _split_points(conn: Connection, jobs: int) -> list[str]:
    """SMS ids that cut the stored events into `jobs` ranges of about equal size."""
    if jobs < 2:
        return []
    rows = await conn.fetch(_SPLIT_POINTS, [n / jobs for n in range(1, jobs)])
    return [row["cut"] for row in rows if row["cut"] is not None]


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


async def _apply_page(
    conn: Connection,
    page: _Page,
    summary: ReplaySummary,
    *,
    routing_window: timedelta | None,
) -> None:
    updates, reports, reingest = [], [], []
    for row, parsed in zip(page.rows, page.parsed, strict=True):
        key = parsed.event_id if isinstance(parsed, Envelope) else parsed.key
        if isinstance(parsed, Malformed) and key != row["event_id"]:
            # Refused by today's rules (a webhook that took the receiver's own type or
            # id, say): the row keeps its id and says why.
            parsed = parsed._replace(key=row["event_id"])
        elif key != row["event_id"]:
            # A body kept under the hash of its bytes that today's code reads as a
            # real event: stored anew under its own id, like a new delivery.
            reingest.append(_incoming(parse_envelope(row["body"]), row))
            parsed = Malformed(
                key=row["event_id"],
                reason=f"stored again as event {key}",
                type=None,
                attempt=None,
                subscription=None,
                fingerprint=b"",
            )
        state = event_state(parsed).value
        summary.by_state[state] = summary.by_state.get(state, 0) + 1
        fields = _event_fields(parsed)
        current = (row["state"], row["type"], row["emitted_at"], row["reason"], row["sms_id"])
        if (state, *fields) != current:
            updates.append((row["event_id"], state, *fields))
            summary.changed += state != row["state"]
        report = report_of(row["event_id"], row["received_at"], parsed)
        if report is not None:
            reports.append(report)
    if updates:
        await conn.execute(_UPDATE_EVENTS, *columns(updates, 6))
    if reingest:
        # Projected here, in this transaction: not left for the projector too.
        outcomes = await store_batch(conn, reingest, pending=False)
        summary.reingested += sum(o.result is not Result.DUPLICATE for o in outcomes)
        reports.extend(stored_reports(reingest, outcomes))
    # The one way in (receiver.projection.apply): an event that cannot be applied is
    # parked, the rest of the page applied. Also in a rebuild, a status no handler was
    # told of is announced; one it was told of, or an older one, is not.
    applied = await apply(conn, reports, routing_window=routing_window)
    summary.parked += len(applied.parked)


def _event_fields(
    parsed: Envelope | Malformed,
) -> tuple[str | None, datetime | None, str | None, str | None]:
    """(type, emitted_at, reason, sms_id) as the events table keeps them."""
    if isinstance(parsed, Malformed):
        return parsed.type, None, parsed.reason, None
    return parsed.type, parsed.emitted_at, None, parsed.sms.sms_id if parsed.sms else None


def _incoming(parsed: Envelope | Malformed, row: Record) -> Incoming:
    return Incoming(
        parsed=parsed,
        body=row["body"],
        received_at=row["received_at"],
        headers={},
        remote_addr=None,
    )
