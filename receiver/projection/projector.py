"""The projector: applies the stored events that wait for it, behind the answer to CALLR.

The answer path stores an event and a row in `projection_pending` in one
transaction. A projector takes the oldest pending rows (up to `batch_max`), reads
their events, and in one transaction applies them (message records, history,
evidence, day marks, the forwards of inbound SMS) and deletes the rows. The delete
and the projection commit together or not at all, so every stored event is
applied exactly once, whatever crashes in between: a batch that did not commit
is still pending, and the next projector to look takes it.

Every `receiver serve` process and `receiver worker` runs one, and one of them
works at a time: a batch starts by taking a transaction-level advisory lock, and
a projector that does not get it stands by. One projector at a time makes the
largest batches (a batch costs PostgreSQL less per event the larger it is), never
waits on another's message rows, and creates the forwards of one phone number in
the order their events were stored. The claim itself (`FOR UPDATE SKIP LOCKED`,
then DELETE) does not depend on the lock: two projectors could never take one row.

A projector wakes when its process's writer commits events, on NOTIFY from other
processes' commits, and every `poll_interval` in any case. A batch that fails for
one event's sake is split until the event is alone; that event is marked invalid,
with the database's reason, and removed from the queue: it never blocks the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple

import asyncpg
import structlog

from receiver import metrics
from receiver.callr.own import parse_stored
from receiver.db.engine import UNAVAILABLE_ERRORS, asyncpg_dsn, batch_transaction
from receiver.db.listen import listen
from receiver.forwarding.routing import announce, route
from receiver.ingest.store import PENDING_CHANNEL
from receiver.projection.records import Report, project, report_of

log = structlog.get_logger("receiver.projector")

# The advisory lock whose holder is the projector at work (any number, fixed).
_TURN_LOCK = 7_263_110_402
_TURN = "SELECT pg_try_advisory_xact_lock($1)"

# In the order stored (DELETE ... RETURNING alone gives no order): the forwards of
# one phone number are created, and delivered, in that order.
_CLAIM_NEXT = """
WITH claimed AS (
    DELETE FROM projection_pending p
    WHERE p.id IN (
        SELECT q.id FROM projection_pending q ORDER BY q.id LIMIT $1 FOR UPDATE SKIP LOCKED
    )
    RETURNING p.id, p.event_id
)
SELECT * FROM claimed ORDER BY id
"""

_CLAIM_IDS = """
WITH claimed AS (
    DELETE FROM projection_pending p
    WHERE p.id IN (
        SELECT q.id FROM projection_pending q WHERE q.id = ANY($1::bigint[])
        FOR UPDATE SKIP LOCKED
    )
    RETURNING p.id, p.event_id
)
SELECT * FROM claimed ORDER BY id
"""

_BODIES = """
SELECT e.event_id, e.type, e.body, e.received_at FROM events e
WHERE e.event_id = ANY($1::text[]) AND e.state = 'processed'
"""

_MARK_INVALID = """
UPDATE events SET state = 'invalid', reason = $2 WHERE event_id = $1
"""
_FORGET = "DELETE FROM projection_pending WHERE id = $1"

_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
_RETRIES = 3
# What one event's values can make the database refuse (a time out of range, a NUL
# in a text, a number too large). Any other error is not the event's fault: were
# batches split for it, every event would end up marked invalid one by one.
_POISON = (asyncpg.exceptions.DataError, asyncpg.exceptions.IntegrityConstraintViolationError)
# Parsed a slice at a time, the event loop turning in between: the answers to CALLR
# that this process owes do not wait for a whole batch's parse.
_PARSE_SLICE = 250
# After another projector had the turn: the least wait before asking again, so that
# a standby does not ask at every commit's notification.
_STANDBY_PAUSE = 0.05


class Turn(NamedTuple):
    """What one try at a batch did."""

    taken: bool  # False: another projector had the turn
    events: int


class Projector:
    """Applies pending events until stopped; one per process, one at work at a time."""

    def __init__(
        self,
        pool: Any,
        database_url: str | None = None,
        *,
        batch_max: int = 2000,
        poll_interval: float = 1.0,
        routing_window: timedelta = timedelta(days=7),
    ) -> None:
        """`database_url`: where to LISTEN for other processes' commits (None: poll only)."""
        self._pool = pool
        self._dsn = asyncpg_dsn(database_url) if database_url else None
        self._batch_max = batch_max
        self._poll_interval = poll_interval
        self._routing_window = routing_window
        self._wake = asyncio.Event()
        # What this process's writer parsed, by event id: applied without reading and
        # parsing the bodies again. Bounded (a backlog that outgrows it is read from
        # the database like the events of other processes): the oldest go first.
        self._parsed: dict[str, Report] = {}
        self._keep = 4 * batch_max

    def wake(self) -> None:
        """There are new pending events (another process committed some)."""
        self._wake.set()

    def stored(self, reports: Sequence[Report]) -> None:
        """This process's writer committed these events: keep what it parsed, and wake."""
        parsed = self._parsed
        for report in reports:
            parsed[report.event_id] = report
        excess = len(parsed) - self._keep
        if excess > 0:
            for event_id in list(itertools.islice(parsed, excess)):
                del parsed[event_id]
        self._wake.set()

    async def run(self) -> None:
        """Project until cancelled; survives database outages and poisoned events."""
        listener = (
            asyncio.create_task(
                listen(self._dsn, PENDING_CHANNEL, self.wake), name="projector-listen"
            )
            if self._dsn
            else None
        )
        await self._check_autovacuum()
        try:
            while True:
                self._wake.clear()
                turn = await self._try_batch()
                if turn.events:
                    continue
                if not turn.taken:
                    await asyncio.sleep(_STANDBY_PAUSE)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)

    async def _check_autovacuum(self) -> None:
        """Warn when autovacuum is off: the queue and the plans of the batches rely on it.

        Without it, the rows the projector deletes are never vacuumed away (each claim
        then walks past them), and the planner's statistics keep describing the tables
        as they were when last analyzed (measured: a drain fell from 13,000 to 2,540
        events a second with the message table analyzed empty; docs/performance.md).
        """
        with contextlib.suppress(*UNAVAILABLE_ERRORS, asyncpg.PostgresError):
            async with self._pool.acquire() as conn:
                if await conn.fetchval("SELECT current_setting('autovacuum')") == "off":
                    log.warning(
                        "autovacuum_off",
                        hint="turn autovacuum on: without it the projection queue bloats and"
                        " the planner's statistics go stale",
                    )

    async def drain(self) -> int:
        """Project until nothing is pending; how many events this projector took off the queue
        (applied, or kept as invalid when they could not be).

        Waits its turn while another projector works.
        """
        applied = 0
        while True:
            turn = await self.project_batch()
            applied += turn.events
            if turn.taken and not turn.events:
                return applied
            if not turn.taken:
                await asyncio.sleep(_STANDBY_PAUSE)

    async def _try_batch(self) -> Turn:
        try:
            return await self.project_batch()
        except UNAVAILABLE_ERRORS as error:
            log.warning("projector_database_unavailable", error=repr(error))
        # Not migrated yet, a statement cancelled, a bug: tried again at the next poll.
        # Ending here would stop the projection while the service looks healthy.
        except Exception:
            log.exception("projector_batch_failed")
        return Turn(taken=True, events=0)

    async def project_batch(self) -> Turn:
        """Claim the next batch of pending events and apply it, if this projector has the turn."""
        started = time.perf_counter()
        for attempt in range(1, _RETRIES + 1):
            claimed: list[Any] = []
            try:
                async with self._pool.acquire() as conn, batch_transaction(conn, derived=True):
                    if not await conn.fetchval(_TURN, _TURN_LOCK):
                        return Turn(taken=False, events=0)
                    claimed = await conn.fetch(_CLAIM_NEXT, self._batch_max)
                    await self._apply(conn, claimed)
            except _RETRYABLE as error:
                log.warning("projector_batch_retried", attempt=attempt, error=str(error))
                continue
            except _POISON as error:
                # Rolled back: the batch is pending again, and is applied in parts.
                await self._isolate([row["id"] for row in claimed], error)
            if claimed:
                metrics.PROJECTOR_BATCH_SIZE.observe(len(claimed))
                metrics.PROJECTOR_BATCH_SECONDS.observe(time.perf_counter() - started)
            return Turn(taken=True, events=len(claimed))
        raise RuntimeError("the projector's batch kept conflicting with other transactions")

    async def _isolate(self, ids: Sequence[int], error: Exception) -> None:
        """Apply the halves of a batch that failed, down to the one event that fails alone."""
        if len(ids) <= 1:
            if ids:
                await self._give_up(ids[0], error)
            return
        middle = len(ids) // 2
        for half in (ids[:middle], ids[middle:]):
            try:
                async with self._pool.acquire() as conn, batch_transaction(conn, derived=True):
                    await self._apply(conn, await conn.fetch(_CLAIM_IDS, list(half)))
            except _POISON as failure:
                await self._isolate(half, failure)

    async def _give_up(self, pending_id: int, error: Exception) -> None:
        """Keep the event that cannot be projected as invalid, with why, and move on."""
        sqlstate = getattr(error, "sqlstate", None)
        reason = f"the event could not be projected ({sqlstate}): {error}"[:500]
        async with self._pool.acquire() as conn, conn.transaction():
            event_id = await conn.fetchval(
                "SELECT event_id FROM projection_pending WHERE id = $1", pending_id
            )
            if event_id is None:  # another projector applied it meanwhile
                return
            await conn.execute(_MARK_INVALID, event_id, reason)
            await conn.execute(_FORGET, pending_id)
        metrics.PROJECTION_FAILED.inc()
        log.error("event_not_projected", event_id=event_id, error=repr(error))

    async def _apply(self, conn: Any, claimed: Sequence[Any]) -> None:
        reports = await self._reports(conn, claimed)
        applied = await project(conn, reports)
        await route(conn, reports, window=self._routing_window)
        await announce(conn, applied.changes)
        metrics.OUT_OF_ORDER.inc(applied.late)
        metrics.PROJECTED.inc(len(claimed))

    async def _reports(self, conn: Any, claimed: Sequence[Any]) -> list[Report]:
        """The SMS snapshots of the claimed events, in the order claimed.

        Those this process's writer stored were parsed already; the others are read
        and parsed again from their raw bodies. An event that is gone (pruned) or no
        longer processed (a replay changed it) has nothing to apply.
        """
        found: dict[str, Report] = {}
        unparsed = []
        for row in claimed:
            report = self._parsed.pop(row["event_id"], None)
            if report is None:
                unparsed.append(row["event_id"])
            else:
                found[report.event_id] = report
        if unparsed:
            for report in await _parse(await conn.fetch(_BODIES, unparsed)):
                found[report.event_id] = report
        return [found[row["event_id"]] for row in claimed if row["event_id"] in found]


async def _parse(rows: Sequence[Any]) -> list[Report]:
    """The reports of stored events, parsed from their raw bodies a slice at a time."""
    reports = []
    for start in range(0, len(rows), _PARSE_SLICE):
        for row in rows[start : start + _PARSE_SLICE]:
            parsed = parse_stored(row["event_id"], row["type"], row["body"])
            report = report_of(row["event_id"], row["received_at"], parsed)
            if report is not None:
                reports.append(report)
        await asyncio.sleep(0)
    return reports
