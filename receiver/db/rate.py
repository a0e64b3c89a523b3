"""CALLR's rate, shared by every process on the database: sends, reconcile and backfill.

`callr_rate` holds the moment the next request may start. Taking a turn moves it on
by one interval in one statement, so that processes that ask at once get turns one
interval apart, and a burst waits its turn instead of failing.
"""

from __future__ import annotations

import asyncio

from receiver.db.engine import Pool

_TAKE = """
INSERT INTO callr_rate AS r (name, next_at)
VALUES ($1, clock_timestamp() + $2 * interval '1 second')
ON CONFLICT (name) DO UPDATE
    SET next_at = GREATEST(r.next_at, clock_timestamp()) + $2 * interval '1 second'
RETURNING GREATEST(0, extract(epoch FROM r.next_at - clock_timestamp()) - $2)::float8 AS wait
"""


class SharedRate:
    """Spaces the starts of requests to CALLR to `rate` a second, across processes."""

    def __init__(self, pool: Pool, rate: float, name: str = "callr") -> None:
        self._pool = pool
        self._interval = 1.0 / rate
        self._name = name

    async def wait(self) -> None:
        async with self._pool.acquire() as conn:
            wait = await conn.fetchval(_TAKE, self._name, self._interval)
        if wait > 0:
            await asyncio.sleep(wait)
