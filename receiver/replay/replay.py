"""Replay and rebuild: stored events through today's parsing, projection and routing.

Replay pages through the selected events in the order they were received, parses
each raw body again, records what the parse now says (state, type, reason), and
applies the same projection (and routing, for replies) as live ingest, one
transaction per page. The projection depends on the set of events only and
applying an event twice changes nothing, so a replay can be repeated, stopped and
run again, and can run while webhooks arrive.

Both apply events with the projector's code (receiver.projection), in their own
transactions, beside the projector that runs in every serve process.

Rebuild empties the message records, their history and the evidence, then
replays every event without routing (forwards are delivery records, kept as
they are). An event committed before the tables are emptied is in the replay; one
committed after waits for the projector, which applies it to the new tables. An
event that is both replayed and projected (it arrived during the rebuild, or was
pending when it began) is applied twice, which writes nothing the first time did
not: every row the projection writes is a union of evidence or its greatest or
least value. Nothing is lost and nothing is counted twice
(tests/test_replay.py, rebuild under live ingest).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, Protocol

from receiver.callr.envelope import Envelope, Malformed, parse_envelope
from receiver.callr.own import parse_stored
from receiver.db.arrays import columns
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
SELECT e.event_id, e.body, e.received_at, e.state, e.type, e.emitted_at, e.reason, e.sms_id
FROM events e
WHERE {FILTER_SQL}
  AND ($7::timestamptz IS NULL OR (e.received_at, e.event_id) > ($7, $8::text))
ORDER BY e.received_at, e.event_id
LIMIT $9
"""

_COLUMNS = "e.event_id, e.body, e.received_at, e.state, e.type, e.emitted_at, e.reason, e.sms_id"

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

# The days kept for the statistics go too: they are computed again when asked for.
_EMPTY_PROJECTION = "TRUNCATE messages, transitions, observations, stats_rows, stats_days, sends"


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

    def line(self) -> str:
        states = ", ".join(f"{n} {state}" for state, n in sorted(self.by_state.items()))
        head = f"replayed {self.replayed} of {self.total} events"
        tail = f" ({states}); {self.changed} changed state, {self.reingested} stored anew"
        if self.parked:
            tail += f"; {self.parked} could not be applied (kept as invalid, see their reason)"
        if self.stopped:
            tail += "; stopped early: run the same command again to finish (it is safe)"
        return head + tail


async def count(conn: Any, selection: EventFilter) -> list[tuple[str | None, str, int]]:
    """How many stored events match, by type and state (what --dry-run prints)."""
    rows = await conn.fetch(_COUNT, *selection.arguments())
    return [(row["type"], row["state"], row["n"]) for row in rows]


async def replay(
    pool: Any,
    selection: EventFilter,
    *,
    batch: int = 1000,
    routing_window: timedelta | None = timedelta(days=7),
    advance: Callable[[int], None] = lambda n: None,
    stop: StopFlag | None = None,
    total: int | None = None,
    pager: Pager | None = None,
) -> ReplaySummary:
    """Replay the selected events page by page; stops cleanly after a page when `stop` is set.

    `routing_window` None leaves the forwards alone (what rebuild does); `total`
    is how many events match, when the caller has counted them already.
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
                await _apply_page(conn, page, summary, routing_window=routing_window)
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


def _by_received(row: Any) -> tuple[Any, ...]:
    return (row["received_at"], row["event_id"])


def _by_sms(row: Any) -> tuple[Any, ...]:
    return (row["sms_id"], row["received_at"], row["event_id"])


def _received_order(selection: EventFilter) -> Pager:
    return Pager(_PAGE, tuple(selection.arguments()), _by_received, (None, None))


_PARSE_SLICE = 250


@dataclass(frozen=True, slots=True)
class _ReadFailed:
    """What the reader passes on instead of a page when it cannot read one."""

    error: Exception


async def _read_pages(
    pool: Any, pager: Pager, batch: int, pages: asyncio.Queue[_Page | _ReadFailed | None]
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
            parsed += [
                parse_stored(row["event_id"], row["type"], row["body"])
                for row in rows[start : start + _PARSE_SLICE]
            ]
            # Let the loop hear from the database between slices: a whole page parsed
            # at once kept the other connections' results waiting (about 70 ms).
            await asyncio.sleep(0)
        await pages.put(_Page(rows, parsed))
        after = pager.position(rows[-1])


async def rebuild(
    pool: Any,
    *,
    batch: int = 4000,
    jobs: int = 2,
    advance: Callable[[int], None] = lambda n: None,
    stop: StopFlag | None = None,
    total: int | None = None,
    workers: RangeReplayers | None = None,
) -> ReplaySummary:
    """Empty the message records, history and evidence, and project every stored event again.

    `jobs`: how many ranges of SMS ids are replayed at once. The ranges share no
    SMS, so their transactions never wait for each other. They are replayed on
    this process's connections, or each in a child process of `workers` (what the
    command does: see receiver/replay/workers.py).
    """
    if batch < 1:
        # Checked before the tables are emptied: no page could refill them.
        raise ValueError(f"a rebuild needs a batch of at least 1 event, not {batch}")
    async with pool.acquire() as conn:
        pruned = await conn.fetchrow("SELECT max(before) AS before FROM prunes")
        if pruned["before"] is not None:
            raise RebuildRefused(
                f"events received before {pruned['before'].isoformat()} were pruned: a rebuild"
                " would drop the messages they made. `receiver replay` re-runs the current"
                " code over the events that remain and keeps the rest."
            )
        # A short lock: if a long transaction holds the tables, fail rather than
        # stall live ingest behind the wait.
        await conn.execute("SET lock_timeout = '5s'")
        await conn.execute(_EMPTY_PROJECTION)
        await conn.execute("RESET lock_timeout")
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
    return summary


async def replay_range(
    pool: Any,
    bounds: tuple[str | None, str | None],
    *,
    batch: int,
    advance: Callable[[int], None],
    stop: StopFlag | None,
) -> ReplaySummary:
    """Replay, without routing, the events of the SMS ids in [low, high) (None: unbounded)."""
    pager = Pager(_PAGE_BY_SMS, bounds, _by_sms, (None, None, None))
    return await _replay_all(pool, pager, batch, advance, stop)


async def _split_points(conn: Any, jobs: int) -> list[str]:
    """SMS ids that cut the stored events into `jobs` ranges of about equal size."""
    if jobs < 2:
        return []
    rows = await conn.fetch(_SPLIT_POINTS, [n / jobs for n in range(1, jobs)])
    return [row["cut"] for row in rows if row["cut"] is not None]


async def _replay_all(
    pool: Any,
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
    )


async def _apply_page(
    conn: Any,
    page: _Page,
    summary: ReplaySummary,
    *,
    routing_window: timedelta | None,
) -> None:
    updates, reports, reingest = [], [], []
    for row, parsed in zip(page.rows, page.parsed, strict=True):
        key = parsed.event_id if isinstance(parsed, Envelope) else parsed.key
        if key != row["event_id"]:
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


def _incoming(parsed: Envelope | Malformed, row: Any) -> Incoming:
    return Incoming(
        parsed=parsed,
        body=row["body"],
        received_at=row["received_at"],
        headers={},
        remote_addr=None,
    )
