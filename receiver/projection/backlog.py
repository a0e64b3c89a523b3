"""How far behind the projection is, and whether it is stalled: what `/metrics` and
`/api/v1/status` say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from receiver.db.engine import Connection, one_row

# The oldest by queue order, which is the order events were stored in: read from the
# primary key's first entry, where the minimum of `received_at` would scan the queue.
_BACKLOG = """
SELECT (SELECT count(*) FROM projection_pending) AS pending,
    (SELECT received_at FROM projection_pending ORDER BY id LIMIT 1) AS oldest,
    (SELECT max(applied_at) FROM projection_progress) AS last_batch_at
"""


class Backlog(NamedTuple):
    """The events waiting for the projector, the oldest one's arrival, and the last batch."""

    pending: int
    oldest_received_at: datetime | None
    last_batch_at: datetime | None = None
    """When a projector batch that took events last committed (None: never)."""

    def lag_seconds(self, now: datetime | None = None) -> float:
        """How long the oldest pending event has waited; 0 when none waits."""
        if self.oldest_received_at is None:
            return 0.0
        waited = (now or datetime.now(UTC)) - self.oldest_received_at
        return max(waited.total_seconds(), 0.0)

    def stalled_since(self, after: timedelta, now: datetime | None = None) -> datetime | None:
        """Since when no batch has committed while events wait, once that is `after` or longer.

        None while none waits, or while batches keep committing: a long backlog that
        drains is behind, not stalled.
        """
        if not self.pending or self.oldest_received_at is None:
            return None
        since = self.oldest_received_at
        if self.last_batch_at is not None and self.last_batch_at > since:
            since = self.last_batch_at
        return since if (now or datetime.now(UTC)) - since >= after else None


async def backlog(conn: Connection) -> Backlog:
    """Read the backlog on `conn`."""
    row = await one_row(conn, _BACKLOG)
    return Backlog(row["pending"], row["oldest"], row["last_batch_at"])
