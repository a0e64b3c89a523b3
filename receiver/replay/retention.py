"""Retention: remove raw events (and their deliveries) received before a cutoff.

The message records, their history and evidence stay: they are what dashboards read,
and they do not need the raw bodies. What goes is what replay and rebuild would need
for those events, so a rebuild refuses to run after a prune (see `receiver.replay`).

Events are removed oldest first in short transactions of `batch` events, each
locking only the rows it removes, so live ingest never waits long behind it. An
event that an undelivered forward still needs (pending, in flight, dead, unrouted)
is kept until its forward is done or removed, and so is an event that the projector
has not applied yet. The traffic figures of `/api/v1/stats`
(events, deliveries, retries received) for the days pruned drop accordingly; the
message outcomes do not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from receiver.db.engine import Connection, Pool, one_row
from receiver.projection.daily_stats import mark_changed

_PRUNABLE = """
FROM events e
WHERE e.received_at < $1
  AND NOT EXISTS (SELECT 1 FROM forwards f WHERE f.event_id = e.event_id AND f.state <> 'done')
  AND NOT EXISTS (SELECT 1 FROM projection_pending p WHERE p.event_id = e.event_id)
"""
_COUNT = f"""
SELECT count(*) AS events,
    (SELECT count(*) FROM deliveries d WHERE d.event_id IN (SELECT e.event_id {_PRUNABLE}))
        AS deliveries
{_PRUNABLE}
"""
_DELETE_BATCH = f"""
WITH batch AS (
    SELECT e.event_id {_PRUNABLE}
    ORDER BY e.received_at
    LIMIT $2
    FOR UPDATE OF e SKIP LOCKED
),
deliveries AS (SELECT count(*) AS n FROM deliveries d JOIN batch USING (event_id)),
gone AS (
    DELETE FROM events e USING batch WHERE e.event_id = batch.event_id
    RETURNING (e.received_at AT TIME ZONE 'UTC')::date AS day
)
SELECT (SELECT count(*) FROM gone) AS events, (SELECT n FROM deliveries) AS deliveries,
    ARRAY(SELECT DISTINCT day FROM gone) AS days
"""
_RECORD = "INSERT INTO prunes (before, events, deliveries) VALUES ($1, $2, $3)"


@dataclass
class Pruned:
    """What a prune removed, or would remove."""

    before: datetime
    events: int = 0
    deliveries: int = 0
    batches: int = 0
    stopped: bool = False

    def line(self, *, dry_run: bool = False) -> str:
        what = f"{self.events} events and {self.deliveries} deliveries received before"
        if dry_run:
            return f"{what} {self.before.isoformat()} would be removed; nothing was changed"
        done = f"removed {what} {self.before.isoformat()} in {self.batches} batches"
        return done + (" (stopped: run it again to finish)" if self.stopped else "")


async def count(conn: Connection, before: datetime) -> Pruned:
    row = await one_row(conn, _COUNT, before)
    return Pruned(before=before, events=row["events"], deliveries=row["deliveries"])


async def prune(
    pool: Pool,
    before: datetime,
    *,
    batch: int = 5000,
    advance: Callable[[int], None] = lambda n: None,
    stop: asyncio.Event | None = None,
) -> Pruned:
    """Remove the prunable events received before `before`, `batch` at a time."""
    result = Pruned(before=before)
    async with pool.acquire() as conn:
        while stop is None or not stop.is_set():
            async with conn.transaction():
                # The deliveries go with their event (ON DELETE CASCADE).
                row = await one_row(conn, _DELETE_BATCH, before, batch)
                # The traffic counts kept for those days are counted again.
                await mark_changed(conn, row["days"])
                if row["events"]:
                    result.batches += 1
                    result.events += row["events"]
                    result.deliveries += row["deliveries"]
                    advance(row["events"])
            if row["events"] < batch:
                break
        result.stopped = stop is not None and stop.is_set()
        if result.events:
            await conn.execute(_RECORD, before, result.events, result.deliveries)
    return result
