"""Which stored events a replay takes and how it reads them: the filter, the pages in
received order or by SMS id, each parsed again (a slice at a time) while the page
before is applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.callr.envelope import Envelope, Malformed
from receiver.callr.own import parse_stored
from receiver.db.engine import Connection, Pool, Record

FILTER_SQL = """
    ($1::timestamptz IS NULL OR e.received_at >= $1)
    AND ($2::timestamptz IS NULL OR e.received_at < $2)
    AND (cardinality($3::text[]) = 0 OR e.type = ANY($3::text[]))
    AND ($4::text IS NULL OR e.event_id = $4)
    AND ($5::text IS NULL OR e.sms_id = $5)
    AND (cardinality($6::text[]) = 0 OR e.state = ANY($6::text[]))
"""


COUNT_SQL = f"""
SELECT e.type, e.state, count(*) AS n FROM events e
WHERE {FILTER_SQL}
GROUP BY e.type, e.state ORDER BY e.type NULLS LAST, e.state
"""


PAGE_SQL = f"""
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
PAGE_BY_SMS_SQL = f"""
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


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which stored events a replay takes; empty fields select everything."""

    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()
    event_id: str | None = None
    sms_id: str | None = None
    states: tuple[str, ...] = ()

    def arguments(self) -> list[object]:
        return [
            self.since,
            self.until,
            list(self.types),
            self.event_id,
            self.sms_id.lower() if self.sms_id else None,
            list(self.states),
        ]


async def count(conn: Connection, selection: EventFilter) -> list[tuple[str | None, str, int]]:
    """How many stored events match, by type and state (what --dry-run prints)."""
    rows = await conn.fetch(COUNT_SQL, *selection.arguments())
    return [(row["type"], row["state"], row["n"]) for row in rows]


@dataclass(frozen=True, slots=True)
class Page:
    rows: Sequence[Any]
    parsed: Sequence[Envelope | Malformed]


@dataclass(frozen=True, slots=True)
class Pager:
    """How a replay pages: a statement whose last parameters are the position after the
    previous page and the page size, the position of a row, and the first position."""

    sql: str
    arguments: tuple[object, ...]
    position: Callable[[Any], tuple[object, ...]]
    start: tuple[object, ...]


def _by_received(row: Record) -> tuple[object, ...]:
    return (row["received_at"], row["event_id"])


def by_sms(row: Record) -> tuple[object, ...]:
    return (row["sms_id"], row["received_at"], row["event_id"])


def received_order(selection: EventFilter) -> Pager:
    return Pager(PAGE_SQL, tuple(selection.arguments()), _by_received, (None, None))


_PARSE_SLICE = 250


@dataclass(frozen=True, slots=True)
class ReadFailed:
    """What the reader passes on instead of a page when it cannot read one."""

    error: Exception


async def read_pages(
    pool: Pool, pager: Pager, batch: int, pages: asyncio.Queue[Page | ReadFailed | None]
) -> None:
    after = pager.start
    while True:
        try:
            async with pool.acquire() as conn:
                rows = await conn.fetch(pager.sql, *pager.arguments, *after, batch)
        except Exception as error:
            # Said to the replay waiting for the page, which raises it: without
            # this it would wait for ever.
            await pages.put(ReadFailed(error))
            return
        if not rows:
            await pages.put(None)
            return
        parsed: list[Envelope | Malformed] = []
        for start in range(0, len(rows), _PARSE_SLICE):
            parsed += [parse_row(row) for row in rows[start : start + _PARSE_SLICE]]
            # Let the loop hear from the database between slices: a whole page parsed
            # at once kept the other connections' results waiting (about 70 ms).
            await asyncio.sleep(0)
        await pages.put(Page(rows, parsed))
        after = pager.position(rows[-1])


def parse_row(row: Record) -> Envelope | Malformed:
    return parse_stored(row["event_id"], row["type"], row["body"], own=row["own"])


async def split_points(conn: Connection, jobs: int) -> list[str]:
    """SMS ids that cut the stored events into `jobs` ranges of about equal size."""
    if jobs < 2:
        return []
    rows = await conn.fetch(_SPLIT_POINTS, [n / jobs for n in range(1, jobs)])
    return [row["cut"] for row in rows if row["cut"] is not None]
