"""Reads on a replica: the query API's and the console's read pages on a streaming
standby (RECEIVER_READ_DATABASE_URL) while it is within RECEIVER_READ_REPLICA_MAX_LAG of
the primary; on the primary otherwise, and whenever there is no replica.

Whatever writes, and whatever must see its own write at once, never reads here: the
webhooks, the workers, sessions and tokens, sends, `/api/v1/status`'s counts, the
console's forms and the page they return to.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from receiver.db.engine import UNAVAILABLE_OR_REFUSED, Pool, Record

if TYPE_CHECKING:
    from asyncpg.pool import PoolAcquireContext

log = structlog.get_logger("receiver.replica")

# How far behind the primary the standby's replay is: nothing when it has replayed all
# it received (an idle primary is no lag), else the age of the last commit replayed.
# That holds only while it receives: one cut off from its primary has replayed all it
# got, and falls behind with a lag of 0. Its WAL receiver says whether it streams (a
# role without pg_read_all_stats sees only the receiver's pid: a receiver is running).
_LAG = """
SELECT pg_is_in_recovery() AS standby,
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver
               WHERE pid IS NOT NULL AND (status IS NULL OR status = 'streaming'))
           AS receiving,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
            THEN 0
            ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8 AS lag
"""
CHECK_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """Whether reads go to the replica, how far behind it is, and why not when not."""

    used: bool
    lag_seconds: float | None
    reason: str | None = None

    def to_json(self) -> dict[str, object]:
        lag = None if self.lag_seconds is None else round(self.lag_seconds, 3)
        return {"lag_seconds": lag, "used": self.used, "reason": self.reason}


class Reads:
    """Where the read pages read: `acquire()` lends a connection of the replica while it
    is in time, of the primary's read pool otherwise."""

    def __init__(self, primary: Pool, replica: Pool | None = None, max_lag: float = 30.0) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag = max_lag
        self.state: ReplicaState | None = (
            None if replica is None else ReplicaState(False, None, "not checked yet")
        )

    def acquire(self) -> PoolAcquireContext[Record]:
        used = self.replica is not None and self.state is not None and self.state.used
        return (self.replica if used and self.replica is not None else self.primary).acquire()

    async def check(self) -> ReplicaState | None:
        """Ask the replica how far behind it is, and decide where reads go."""
        if self.replica is None:
            return None
        try:
            async with asyncio.timeout(2.0), self.replica.acquire() as conn:
                row = await conn.fetchrow(_LAG)
        except UNAVAILABLE_OR_REFUSED as error:  # TimeoutError among them
            said = f"the replica does not answer: {type(error).__name__}"
            state = ReplicaState(False, None, said)
        else:
            assert row is not None
            lag = float(row["lag"])
            if not row["standby"]:
                state = ReplicaState(False, lag, "it is not a standby (promoted?)")
            elif not row["receiving"]:
                state = ReplicaState(
                    False,
                    None,
                    "it receives nothing from the primary (its WAL receiver is not streaming)",
                )
            elif lag > self.max_lag:
                state = ReplicaState(False, lag, f"{lag:.1f} s behind, past {self.max_lag:g} s")
            else:
                state = ReplicaState(True, lag)
        if self.state is None or state.used != self.state.used:
            if state.used:
                log.info("read_replica_used", lag_seconds=state.lag_seconds)
            else:
                log.warning("read_replica_left", reason=state.reason)
        self.state = state
        return state

    async def run(self) -> None:
        """Check every second until cancelled."""
        while True:
            await self.check()
            await asyncio.sleep(CHECK_EVERY)
