"""What the console reads beyond the API's own queries, each by an index.

Traffic by minute (events and deliveries by `received_at`), forwards by state, the
health of each handler over the last day, the replies to an MT, the attempts of a
message's forwards, and the conflicting deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from receiver.db.engine import Connection, one_row
from receiver.ingest.recent import MinuteCounts

# Webhooks by result per bucket: events (the first delivery of each), those not
# processed by state, and deliveries (every further one is a duplicate: another try
# or a conflict). Each reads one index alone (`received_at`, and the partial index
# of the events not processed).
_EVENTS_BY_BUCKET = """
SELECT date_bin($2::interval, received_at, $1) AS at, count(*) AS n
FROM events WHERE received_at >= $1 GROUP BY 1
"""
_NOT_PROCESSED_BY_BUCKET = """
SELECT date_bin($2::interval, received_at, $1) AS at, state, count(*) AS n
FROM events WHERE state <> 'processed' AND received_at >= $1 GROUP BY 1, 2
"""
_DELIVERIES_BY_BUCKET = """
SELECT date_bin($2::interval, received_at, $1) AS at, count(*) AS n
FROM deliveries WHERE received_at >= $1 GROUP BY 1
"""
# A bucket this far in the past gets no more rows: `received_at` is the arrival
# time, and a request waits at most RECEIVER_ACK_TIMEOUT (60 s at most) for its commit.
_SETTLED = timedelta(seconds=90)

_FORWARD_COUNTS = """
SELECT (SELECT count(*) FROM forwards WHERE state IN ('pending', 'in_flight') AND attempts = 0)
        AS pending,
    (SELECT count(*) FROM forwards WHERE state IN ('pending', 'in_flight') AND attempts > 0)
        AS retrying,
    (SELECT count(*) FROM forwards WHERE state = 'dead') AS dead,
    (SELECT count(*) FROM forwards WHERE state = 'unrouted') AS unrouted
"""

_HANDLER_HEALTH = """
SELECT handler_id,
    count(*) FILTER (WHERE state = 'done') AS delivered,
    count(*) FILTER (WHERE state IN ('pending', 'in_flight') AND attempts > 0) AS retrying,
    count(*) FILTER (WHERE state = 'dead') AS dead,
    (array_agg(last_error ORDER BY id DESC) FILTER (WHERE last_error IS NOT NULL))[1]
        AS last_error
FROM forwards
WHERE state IN ('done', 'dead', 'pending', 'in_flight') AND created_at >= $1
GROUP BY handler_id
"""

_CONFLICT_COUNT = "SELECT count(*) FROM deliveries WHERE conflict AND received_at >= $1"

# The replies waiting for a handler, by the user_data they wait for (from the partial
# index on the unrouted forwards' sender: they are few).
_WAITING = """
SELECT user_data, count(*) AS n, min(created_at) AS oldest FROM forwards
WHERE state = 'unrouted'
GROUP BY user_data ORDER BY count(*) DESC, user_data NULLS LAST LIMIT $1
"""

_REPLIES = """
SELECT f.id, f.sms_id, f.rule, f.handler_id, f.state, f.created_at, f.user_data, f.delivered_at
FROM forwards f WHERE f.mt_sms_id = $1 AND f.kind = 'reply' ORDER BY f.id
"""

_ATTEMPTS = """
SELECT forward_id, at, status_code, excerpt, error, duration_ms
FROM forward_attempts WHERE forward_id = ANY($1::bigint[]) ORDER BY id
"""

_CONFLICTS = """
SELECT d.id, d.event_id, d.attempt, d.received_at, d.remote_addr, e.type, e.sms_id
FROM deliveries d JOIN events e ON e.event_id = d.event_id
WHERE d.conflict
  AND ($1::timestamptz IS NULL OR d.received_at >= $1)
  AND ($2::timestamptz IS NULL OR d.received_at < $2)
  AND ($3::bigint IS NULL OR d.id < $3)
ORDER BY d.received_at DESC, d.id DESC
LIMIT $4
"""

RESULTS = ("stored", "duplicate", "unhandled", "invalid", "refused")
_STATE_RESULT = {"processed": "stored", "unhandled": "unhandled", "invalid": "invalid"}


@dataclass(frozen=True, slots=True)
class Window:
    """A span of the overview: how far back, and the width of a chart's bar."""

    name: str
    span: timedelta
    bucket: timedelta

    def start(self, now: datetime) -> datetime:
        """The first bucket's start: whole buckets, the last one holding `now`."""
        seconds = self.bucket.total_seconds()
        aligned = datetime.fromtimestamp(now.timestamp() // seconds * seconds, UTC)
        return aligned - self.span + self.bucket


WINDOWS = {
    "hour": Window("hour", timedelta(hours=1), timedelta(minutes=1)),
    "day": Window("day", timedelta(days=1), timedelta(minutes=15)),
}


@dataclass(frozen=True, slots=True)
class Traffic:
    """Webhooks a minute by result, one value per bucket."""

    buckets: list[datetime]
    per_minute: dict[str, list[float]]
    totals: dict[str, int]


class TrafficCounts:
    """Webhooks by result per bucket, for one app: its refusals, and settled buckets.

    Rows are stored with their arrival time, so a bucket that ended more than a
    minute and a half ago is final: its counts are kept, and a page that refreshes
    reads only the buckets after the last settled one, instead of a day of rows
    each time.
    """

    def __init__(self, refusals: MinuteCounts) -> None:
        self.refusals = refusals
        self._settled: dict[tuple[float, datetime], dict[str, int]] = {}

    async def read(self, conn: Connection, window: Window, now: datetime | None = None) -> Traffic:
        """Webhooks a minute by result over `window` (refusals: this app's, since it started)."""
        now = now or datetime.now(UTC)
        start = window.start(now)
        count = int(window.span / window.bucket)
        buckets = [start + i * window.bucket for i in range(count)]
        width = window.bucket.total_seconds()
        for key in [key for key in self._settled if key[1] < start - timedelta(days=1)]:
            del self._settled[key]
        first = next((i for i, at in enumerate(buckets) if (width, at) not in self._settled), count)
        fresh = await _counted(conn, window.bucket, buckets[first:]) if first < count else {}
        for at, found in fresh.items():
            if at + window.bucket <= now - _SETTLED:
                self._settled[(width, at)] = found
        counts = {name: [0] * count for name in RESULTS}
        for i, at in enumerate(buckets):
            bucket = fresh[at] if at in fresh else self._settled[(width, at)]
            for name in RESULTS:
                counts[name][i] = bucket[name]
        index = {at: i for i, at in enumerate(buckets)}
        for at, n in self.refusals.since(start, window.bucket):
            if at in index:
                counts["refused"][index[at]] += n
        minutes = width / 60
        return Traffic(
            buckets=buckets,
            per_minute={name: [n / minutes for n in values] for name, values in counts.items()},
            totals={name: sum(values) for name, values in counts.items()},
        )


async def _counted(
    conn: Connection, width: timedelta, buckets: list[datetime]
) -> dict[datetime, dict[str, int]]:
    """The stored results of `buckets` (consecutive, the last one holding now)."""
    read = {at: dict.fromkeys(RESULTS, 0) for at in buckets}
    since = buckets[0]
    firsts = dict.fromkeys(read, 0)
    for row in await conn.fetch(_EVENTS_BY_BUCKET, since, width):
        if row["at"] in read:
            firsts[row["at"]] = row["n"]
            read[row["at"]]["stored"] += row["n"]
    for row in await conn.fetch(_NOT_PROCESSED_BY_BUCKET, since, width):
        if row["at"] in read:
            read[row["at"]][_STATE_RESULT.get(row["state"], "stored")] += row["n"]
            read[row["at"]]["stored"] -= row["n"]
    for row in await conn.fetch(_DELIVERIES_BY_BUCKET, since, width):
        if row["at"] in read:
            read[row["at"]]["duplicate"] = max(row["n"] - firsts[row["at"]], 0)
    return read


async def forward_counts(conn: Connection) -> dict[str, int]:
    """Forwards waiting for their first attempt, retrying, dead and waiting for a handler."""
    return dict(await one_row(conn, _FORWARD_COUNTS))


async def waiting_for_handlers(conn: Connection, limit: int = 20) -> list[object]:
    """The user_data replies wait for a handler for: how many, since when; most first."""
    return list(await conn.fetch(_WAITING, limit))


async def conflict_count(conn: Connection, since: datetime) -> int:
    """Conflicting deliveries since `since` (from their own small index)."""
    return int(await conn.fetchval(_CONFLICT_COUNT, since))


async def handler_health(
    conn: Connection, now: datetime | None = None
) -> dict[int, dict[str, object]]:
    """Per handler id, its forwards of the last day: delivered, retrying, dead, last error."""
    since = (now or datetime.now(UTC)) - timedelta(days=1)
    return {row["handler_id"]: dict(row) for row in await conn.fetch(_HANDLER_HEALTH, since)}


async def replies_to(conn: Connection, sms_id: str) -> list[dict[str, object]]:
    """The MOs routed as replies to the MT `sms_id`, with their rule."""
    return [dict(row) for row in await conn.fetch(_REPLIES, sms_id)]


async def attempts_of(
    conn: Connection, forward_ids: list[int]
) -> dict[int, list[dict[str, object]]]:
    """Every attempt of each forward, oldest first."""
    found: dict[int, list[dict[str, object]]] = {i: [] for i in forward_ids}
    if forward_ids:
        for row in await conn.fetch(_ATTEMPTS, forward_ids):
            found[row["forward_id"]].append(dict(row))
    return found


async def conflicts(
    conn: Connection,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[dict[str, object]]:
    """Conflicting deliveries, newest first (a page of `limit`, before `before_id`)."""
    rows = await conn.fetch(_CONFLICTS, since, until, before_id, limit)
    return [dict(row) for row in rows]
