"""How far behind the projection is: what `/metrics` and `/api/v1/status` say."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

# The oldest by queue order, which is the order events were stored in: read from the
# primary key's first entry, where the minimum of `received_at` would scan the queue.
_BACKLOG = """
SELECT (SELECT count(*) FROM projection_pending) AS pending,
    (SELECT received_at FROM projection_pending ORDER BY id LIMIT 1) AS oldest
"""


class Backlog(NamedTuple):
    """The events waiting for the projector, and when the oldest of them was received."""

    pending: int
    oldest_received_at: datetime | None

    def lag_seconds(self, now: datetime | None = None) -> float:
        """How long the oldest pending event has waited; 0 when none waits."""
        if self.oldest_received_at is None:
            return 0.0
        waited = (now or datetime.now(UTC)) - self.oldest_received_at
        return max(waited.total_seconds(), 0.0)


async def backlog(conn: Any) -> Backlog:
    """Read the backlog on `conn`."""
    row = await conn.fetchrow(_BACKLOG)
    return Backlog(row["pending"], row["oldest"])
