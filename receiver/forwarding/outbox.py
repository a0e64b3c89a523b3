"""Operations on the forwards themselves: re-queueing them by filter or one by one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from receiver.db.engine import Connection, one_row
from receiver.forwarding.routing import wake_dispatchers

RETRYABLE_STATES = ("dead", "done", "pending")

_RETRY = """
UPDATE forwards SET state = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL
WHERE state = $1 AND handler_id IS NOT NULL
  AND ($2::bigint IS NULL OR handler_id = $2)
  AND ($3::timestamptz IS NULL OR created_at >= $3)
  AND ($4::timestamptz IS NULL OR created_at < $4)
  AND ($5::text IS NULL OR event_id = $5)
RETURNING id
"""


_RETRY_BY_ID = """
WITH queued AS (
    UPDATE forwards SET state = 'pending', attempts = 0, next_attempt_at = now(),
        last_error = NULL
    WHERE id = ANY($1::bigint[]) AND state IN ('dead', 'done') AND handler_id IS NOT NULL
    RETURNING id
)
SELECT (SELECT count(*) FROM forwards WHERE id = ANY($1::bigint[])) AS found,
    (SELECT count(*) FROM queued) AS queued
"""


@dataclass(frozen=True, slots=True)
class ForwardFilter:
    """Which forwards an operation applies to; None means any."""

    state: str = "dead"
    handler_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    event_id: str | None = None


async def retry_forwards(conn: Connection, selection: ForwardFilter) -> int:
    """Queue the selected forwards for delivery now, with a fresh set of attempts.

    Their earlier attempts stay recorded. Unrouted forwards are routed instead
    (`route_unrouted`).
    """
    if selection.state not in RETRYABLE_STATES:
        raise ValueError(f"state must be one of {', '.join(RETRYABLE_STATES)}")
    async with conn.transaction():
        rows = await conn.fetch(
            _RETRY,
            selection.state,
            selection.handler_id,
            selection.since,
            selection.until,
            selection.event_id,
        )
        if rows:
            await wake_dispatchers(conn)
    return len(rows)


async def retry_forwards_by_id(conn: Connection, ids: list[int]) -> tuple[int, int]:
    """Queue the dead or delivered forwards among `ids` for delivery now, with fresh attempts.

    Returns how many of the ids are forwards, and how many of those were queued (the
    others are pending, in flight, or have no handler).
    """
    async with conn.transaction():
        row = await one_row(conn, _RETRY_BY_ID, ids)
        if row["queued"]:
            await wake_dispatchers(conn)
    return row["found"], row["queued"]
