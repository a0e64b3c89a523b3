"""Events that arrive through a webhook subscription the receiver did not make.

`receiver callr subscribe` keeps every subscription it makes. An event whose
`hook_hash` (v1) or `sid` (v2) names another one is still stored like any other;
it is made visible, once per subscription and process, by a warning and the
`receiver_callr_unknown_subscriptions` counter. Nothing is said while no
subscription is kept at all: the receiver was then set up by hand, and every
subscription would be "unknown".
"""

from __future__ import annotations

import asyncio

import structlog

from receiver import metrics
from receiver.db.engine import Pool, one_row

log = structlog.get_logger("receiver.webhook")

_LOOKUP = """
SELECT EXISTS (SELECT 1 FROM callr_subscriptions WHERE hash = $1) AS known,
       EXISTS (SELECT 1 FROM callr_subscriptions) AS any_kept
"""


class SubscriptionWatch:
    """Looks each subscription up once, off the answer path."""

    def __init__(self) -> None:
        self._settled: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def seen(self, subscription: str | None, pool: Pool) -> None:
        """An event came through `subscription`: look it up, unless done already."""
        if subscription is None or subscription in self._settled:
            return
        self._settled.add(subscription)
        task = asyncio.get_running_loop().create_task(self._look_up(subscription, pool))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _look_up(self, subscription: str, pool: Pool) -> None:
        try:
            async with pool.acquire() as conn:
                row = await one_row(conn, _LOOKUP, subscription)
        except Exception:  # looked up again with the next event that names it
            self._settled.discard(subscription)
            return
        if row["any_kept"] and not row["known"]:
            metrics.UNKNOWN_SUBSCRIPTIONS.inc()
            log.warning(
                "webhook_unknown_subscription",
                subscription=subscription,
                hint="not made by `receiver callr subscribe` (see `receiver callr subscriptions`)",
            )
