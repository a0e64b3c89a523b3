"""Daily statistics: what `/api/v1/stats` reads for whole UTC days, kept exact by change markers.

Counting a month of messages one by one takes seconds; reading the same month as
thirty days of counted rows takes milliseconds. A day's rows are computed from the
message records and the stored events themselves, never adjusted by deltas, so they
are what a live count gives, as long as the day is fresh:

- every transaction that changes a message record or stores an event writes, in that
  same transaction, a marker for each UTC day it touched (`mark_changed`): the day
  the message was created (before and after the change) and the day the event was
  received;
- a refresh recomputes a day in one REPEATABLE READ transaction and deletes only the
  markers its snapshot sees, so a change it did not see keeps its marker and the day
  stays stale until the next refresh;
- a day is fresh when it has been computed and has no marker left.

Only days that have ended are kept; the edges of a window and the current day are
counted live. A request recounts at most `REFRESH_IN_REQUEST` stale days itself and
counts the others live, leaving them marked. Markers pile up (today's, mostly):
`keep` replaces each day's markers by one, then counts every marked day that has
ended and the days of the last `AHEAD` never counted, so that the next dashboard
finds them ready.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg
import structlog

from receiver.db.engine import UNAVAILABLE_OR_REFUSED, Connection, Pool, Record, one_row

log = structlog.get_logger(__name__)

DAY = timedelta(days=1)
GROUPS = ("network", "user_data", "hour", "day")
TRAFFIC = ("events", "deliveries", "retries", "conflicts")
# One refresh or compaction at a time, across every process on the database: a lock on
# the table only they write, taken first in their transaction. A lock statement takes
# no snapshot, so a refresh that waited reads what the one before it committed; and a
# lock of the transaction holds behind a pooler in transaction mode, where a session's
# (an advisory lock) would not. EXCLUSIVE lets the pages read the table meanwhile.
_LOCK = "LOCK TABLE stats_rows IN EXCLUSIVE MODE"


def utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _ceil_day(at: datetime) -> date:
    day = utc_day(at)
    return day if day_start(day) == at else day + DAY


_MARK = "INSERT INTO stats_changes (day) SELECT unnest($1::date[])"


async def mark_changed(conn: Connection, days: Iterable[date]) -> None:
    """Record, in the caller's transaction, that these days' statistics may have changed."""
    wanted = sorted(set(days))
    if wanted:
        await conn.execute(_MARK, wanted)


# The outcome of messages, one row per (key, direction, status, anomaly, latency):
# `latency` is the time from sent to delivered, in seconds, of delivered messages.
# CALLR's times are to the second, so without grouping (and by hour or day) these
# rows are few, and their counts give exact percentiles. By network or user_data
# there are as many keys as values, and per-second latencies would make about one
# row per message; there `latency` is the lower bound of a bucket (see BUCKETS).
_SECONDS = "extract(epoch FROM m.delivered_at - m.sent_at)"
_LATENCY = f"CASE WHEN m.status = 'delivered' THEN {_SECONDS} END"
# (below this many seconds, bucket width), the last one open-ended.
BUCKETS = ((10, 1), (60, 5), (300, 30), (1800, 300), (7200, 1800), (86400, 7200))


def _bucket_sql(seconds: str) -> str:
    cases = " ".join(
        f"WHEN {seconds} < {limit} THEN floor({seconds} / {width}) * {width}"
        for limit, width in BUCKETS
    )
    return f"CASE {cases} ELSE {BUCKETS[-1][0]} END"


_BUCKET = f"CASE WHEN m.status = 'delivered' THEN {_bucket_sql(_SECONDS)} END"
_BUCKETED = {"network", "user_data"}
_LIVE_KEYS = {
    None: "NULL::text",
    "network": "m.network",
    "user_data": "m.user_data",
    "hour": "date_trunc('hour', m.created_at, 'UTC')",
    "day": "date_trunc('day', m.created_at, 'UTC')",
}
_CACHED_KEYS = {
    None: ("", "NULL::text"),
    "network": ("network", "s.key"),
    "user_data": ("user_data", "s.key"),
    "hour": ("hour", "(s.day + s.key::int * interval '1 hour') AT TIME ZONE 'UTC'"),
    "day": ("", "s.day::timestamp AT TIME ZONE 'UTC'"),
}
_LIVE = {
    group: f"""
SELECT {key} AS key, m.direction, m.status::text AS status, m.anomaly,
    {_BUCKET if group in _BUCKETED else _LATENCY} AS latency, count(*) AS n
FROM messages m
WHERE m.created_at >= $1 AND m.created_at < $2
GROUP BY 1, 2, 3, 4, 5
"""
    for group, key in _LIVE_KEYS.items()
}
# $3: days in the range that are counted live instead (stale, not recounted yet).
_CACHED = {
    group: f"""
SELECT {key} AS key, s.direction, s.status, s.anomaly, s.latency, sum(s.n)::bigint AS n
FROM stats_rows s
WHERE s.grouping = '{grouping}' AND s.day >= $1 AND s.day < $2 AND s.day <> ALL($3::date[])
GROUP BY 1, 2, 3, 4, 5
"""
    for group, (grouping, key) in _CACHED_KEYS.items()
}
_LIVE_TRAFFIC = """
SELECT
    (SELECT count(*) FROM events WHERE received_at >= $1 AND received_at < $2) AS events,
    (SELECT count(*) FROM deliveries WHERE received_at >= $1 AND received_at < $2) AS deliveries,
    (SELECT count(*) FROM deliveries
     WHERE received_at >= $1 AND received_at < $2 AND attempt > 0) AS retries,
    (SELECT count(*) FROM deliveries
     WHERE received_at >= $1 AND received_at < $2 AND conflict) AS conflicts
"""
_CACHED_TRAFFIC = f"""
SELECT {", ".join(f"coalesce(sum({name}), 0)::bigint AS {name}" for name in TRAFFIC)}
FROM stats_days WHERE day >= $1 AND day < $2 AND day <> ALL($3::date[])
"""

# A day's rows for every grouping in one pass over its messages.
_REFRESH_ROWS = f"""
INSERT INTO stats_rows (day, grouping, key, direction, status, anomaly, latency, n)
SELECT $3::date,
    CASE WHEN GROUPING(r.network) = 0 THEN 'network'
         WHEN GROUPING(r.user_data) = 0 THEN 'user_data'
         WHEN GROUPING(r.hour) = 0 THEN 'hour'
         ELSE '' END,
    coalesce(r.network, r.user_data, r.hour),
    r.direction, r.status, r.anomaly, coalesce(r.latency, r.bucket), count(*)
FROM (
    SELECT m.direction, m.status::text AS status, m.anomaly, {_LATENCY} AS latency,
        {_BUCKET} AS bucket, m.network, m.user_data,
        extract(hour FROM m.created_at AT TIME ZONE 'UTC')::int::text AS hour
    FROM messages m
    WHERE m.created_at >= $1 AND m.created_at < $2
) r
GROUP BY r.direction, r.status, r.anomaly,
    GROUPING SETS ((r.latency), (r.network, r.bucket), (r.user_data, r.bucket), (r.hour, r.latency))
"""
_REFRESH_TRAFFIC = f"""
INSERT INTO stats_days (day, refreshed_at, {", ".join(TRAFFIC)})
SELECT $3::date, now(), t.* FROM ({_LIVE_TRAFFIC}) t
ON CONFLICT (day) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at,
    {", ".join(f"{name} = EXCLUDED.{name}" for name in TRAFFIC)}
"""
# The planner multiplies the distinct values of the five grouping columns, expects
# about one group per row, and sorts: five times slower than hashing the thousand
# or so groups there are (measured on a day of 110,000 messages: 480 ms, 105 ms).
_HASH_ONLY = "SET LOCAL enable_sort = off"
_STALE = """
SELECT d::date AS day
FROM generate_series($1::date::timestamp, ($2::date - 1)::timestamp, interval '1 day') AS d
WHERE NOT EXISTS (SELECT 1 FROM stats_days s WHERE s.day = d::date)
   OR EXISTS (SELECT 1 FROM stats_changes c WHERE c.day = d::date)
ORDER BY 1
"""
_IS_FRESH = """
SELECT EXISTS (SELECT 1 FROM stats_days WHERE day = $1)
   AND NOT EXISTS (SELECT 1 FROM stats_changes WHERE day = $1)
"""
# Days to count ahead of the dashboards: the days that changed or were asked for
# (marked), and the days of the last `AHEAD` that were never counted.
AHEAD = 92
# A request counts at most this many days itself; more are counted live.
REFRESH_IN_REQUEST = 2
_TO_COUNT = f"""
SELECT DISTINCT c.day FROM stats_changes c WHERE c.day < $1
UNION
SELECT d::date FROM generate_series(
    ($1::date - {AHEAD})::timestamp, ($1::date - 1)::timestamp, interval '1 day'
) AS d
WHERE NOT EXISTS (SELECT 1 FROM stats_days s WHERE s.day = d::date)
ORDER BY 1 DESC
"""
# A day's markers replaced by one, atomically: the same meaning, fewer rows.
_COMPACT = """
WITH gone AS (DELETE FROM stats_changes RETURNING day)
INSERT INTO stats_changes (day) SELECT DISTINCT day FROM gone
"""


@dataclass
class Window:
    """The outcome rows and traffic counts of a window, from kept days and live counts."""

    rows: list[Record] = field(default_factory=list)
    traffic: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRAFFIC, 0))

    def add_traffic(self, row: Record) -> None:
        for name in TRAFFIC:
            self.traffic[name] += row[name]


async def window(
    conn: Connection, since: datetime, until: datetime, group: str | None, *, traffic: bool = True
) -> Window:
    """Outcome rows (key, direction, status, anomaly, latency, n) and traffic in [since, until).

    `traffic=False` leaves the traffic counts at zero, and reads no event nor delivery.
    """
    result = Window()
    first = _ceil_day(since)
    # Whole days that have ended; the rest is counted live.
    end = min(utc_day(until), utc_day(datetime.now(UTC)))
    live = [(since, until)]
    stale: list[date] = []
    if first < end:
        stale = [row["day"] for row in await conn.fetch(_STALE, first, end)]
        # A read replica (receiver.db.replica) counts them live, and leaves them to the
        # primary's `keep`: it can write nothing.
        writable = not stale or not await conn.fetchval("SELECT pg_is_in_recovery()")
        if writable and len(stale) <= REFRESH_IN_REQUEST:
            await refresh(conn, stale)
            stale = []
        elif writable:
            # Counting many days takes longer than counting their messages once: count
            # them live now, and leave them marked for `keep` to count ahead.
            await mark_changed(conn, stale)
        live = [(since, day_start(first)), *_ranges(stale), (day_start(end), until)]
    async with conn.transaction():
        await conn.execute(_HASH_ONLY)
        if first < end:
            result.rows.extend(await conn.fetch(_CACHED[group], first, end, stale))
            if traffic:
                result.add_traffic(await one_row(conn, _CACHED_TRAFFIC, first, end, stale))
        for start, stop in live:
            if start < stop:
                result.rows.extend(await conn.fetch(_LIVE[group], start, stop))
                if traffic:
                    result.add_traffic(await one_row(conn, _LIVE_TRAFFIC, start, stop))
    return result


def _ranges(days: Sequence[date]) -> list[tuple[datetime, datetime]]:
    """Consecutive days as time ranges."""
    ranges: list[tuple[datetime, datetime]] = []
    for day in sorted(days):
        if ranges and ranges[-1][1] == day_start(day):
            ranges[-1] = (ranges[-1][0], day_start(day) + DAY)
        else:
            ranges.append((day_start(day), day_start(day) + DAY))
    return ranges


async def refresh(conn: Connection, days: Sequence[date]) -> None:
    """Recompute these days' rows, each in a snapshot of its own; one day at a time."""
    for day in days:
        await _refresh_day(conn, day)


async def _refresh_day(conn: Connection, day: date) -> None:
    start, stop = day_start(day), day_start(day) + DAY
    # The snapshot is taken by the first statement after the lock: whatever an earlier
    # refresh committed is in it.
    async with conn.transaction(isolation="repeatable_read"):
        await conn.execute(_LOCK)
        await conn.execute(_HASH_ONLY)
        if await conn.fetchval(_IS_FRESH, day):
            return
        await conn.execute("DELETE FROM stats_rows WHERE day = $1", day)
        await conn.execute(_REFRESH_ROWS, start, stop, day)
        await conn.execute(_REFRESH_TRAFFIC, start, stop, day)
        await conn.execute("DELETE FROM stats_changes WHERE day = $1", day)


async def maintain(conn: Connection) -> int:
    """Compact the markers, recount the kept days that changed and count the recent ones.

    Returns how many days were counted; another process doing the same meanwhile
    makes it skip the compaction, and the days that process counted.
    """
    with contextlib.suppress(asyncpg.LockNotAvailableError):
        async with conn.transaction():
            await conn.execute(_LOCK + " NOWAIT")
            await conn.execute(_COMPACT)
    days = [row["day"] for row in await conn.fetch(_TO_COUNT, utc_day(datetime.now(UTC)))]
    await refresh(conn, days)
    return len(days)


async def keep(pool: Pool, *, every: float) -> None:
    """Run `maintain` every `every` seconds until cancelled; a database error waits a round."""
    while True:
        await asyncio.sleep(every)
        try:
            async with pool.acquire() as conn:
                refreshed = await maintain(conn)
            if refreshed:
                log.info("daily_stats_refreshed", days=refreshed)
        except UNAVAILABLE_OR_REFUSED as error:
            log.warning("daily_stats_not_kept", error=repr(error))
