"""The projector: applies the stored events that wait for it, behind the answer to CALLR.

The answer path stores an event and a row in `projection_pending` in one
transaction. A projector takes the oldest pending rows (up to `batch_max`), reads
their events, and in one transaction applies them (message records, history,
evidence, day marks, the forwards of inbound SMS) and deletes the rows. The delete
and the projection commit together or not at all, so every stored event is
applied exactly once, whatever crashes in between: a batch that did not commit
is still pending, and the next projector to look takes it.

Every `receiver serve` process and `receiver worker` runs one, and they work at
once on different partitions of the queue. An event's partition is a hash of the
phone number on the far side of its SMS (`receiver.projection.store.part_of`): an
MT, its reports and the replies from its recipient share one. A batch starts by
locking up to `parts_a_batch` partitions that have work (transaction-level advisory
locks, in a random order, skipping those another projector holds) and takes the
oldest events of those only. So each number's events are applied, and its forwards
created, in the order they were stored, and each SMS's status changes in order;
a projector that dies loses its locks with its connection, and the others take its
partitions at their next batch. The claim itself (`FOR UPDATE SKIP LOCKED`, then
DELETE) does not depend on the locks: two projectors could never take one row.
Every batch also takes the turn lock shared: the previous release's projectors,
which take it exclusively, keep these out while they work (a rolling upgrade).

A batch is bounded in count (`batch_max`) and in the bytes of its raw bodies
(`batch_bytes`), so that what a projector holds at once stays small however large
the events waiting are.

A projector wakes when its process's writer commits events, on NOTIFY from other
processes' commits, and every `poll_interval` in any case. Events reach the records
through `receiver.projection.apply`, whose error policy parks an event that cannot
be applied and applies the rest: no event can stop the projection. A batch that
fails for any other reason (the database away, a missing table) is tried again
with a growing pause, up to 30 s, and said in the log once a minute with
how often it failed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple

import structlog

from receiver import metrics
from receiver.callr.envelope import Malformed
from receiver.callr.own import parse_stored
from receiver.db.arrays import columns
from receiver.db.engine import (
    RETRYABLE_ERRORS,
    TRANSACTION_TRIES,
    UNAVAILABLE_ERRORS,
    UNAVAILABLE_OR_REFUSED,
    Connection,
    Pool,
    asyncpg_dsn,
    batch_transaction,
)
from receiver.db.loop import Next, WorkLoop
from receiver.projection.apply import apply
from receiver.projection.store import PARTS, PENDING_CHANNEL
from receiver.reports import Applicable, report_of
from receiver.retry import Backoff, Failures

log = structlog.get_logger("receiver.projector")

# The advisory lock the previous release's projector took exclusively for each batch;
# taken shared here, so that neither works beside the other during an upgrade.
_TURN_LOCK = 7_263_110_402
_TURN = "SELECT pg_try_advisory_xact_lock_shared($1)"
# The advisory locks of the queue's partitions: (this key, the partition).
_PART_LOCK = 726_311_041
# Up to $3 partitions with work, in a random order, locked until the batch commits.
# MATERIALIZED keeps the lock out of the candidates' scan: it runs on the rows the
# limit asks for, one at a time, and locks no more than it returns.
_HOLD = """
WITH candidates AS MATERIALIZED (
    SELECT g.part FROM generate_series(0, $1 - 1) AS g(part)
    WHERE EXISTS (SELECT 1 FROM projection_pending q WHERE q.part = g.part)
    ORDER BY random()
)
SELECT c.part FROM candidates c WHERE pg_try_advisory_xact_lock($2, c.part) LIMIT $3
"""
_ANY_PENDING = "SELECT EXISTS (SELECT 1 FROM projection_pending)"

# In the order stored (DELETE ... RETURNING alone gives no order): the forwards of
# one phone number are created, and delivered, in that order. The first `$1` rows
# are locked, and of those the ones whose bodies before them sum under `$2` bytes
# taken (always the first, whatever its size). A batch that takes events marks the
# projection's progress, in the same transaction.
_CLAIM_NEXT = """
WITH next AS (
    SELECT q.id, q.bytes FROM projection_pending q WHERE q.part = ANY($3::smallint[])
    ORDER BY q.id LIMIT $1 FOR UPDATE SKIP LOCKED
),
taken AS (
    SELECT n.id FROM (
        SELECT n.id, sum(n.bytes) OVER (ORDER BY n.id) - n.bytes AS before FROM next n
    ) n
    WHERE n.before < $2
),
claimed AS (
    DELETE FROM projection_pending p WHERE p.id IN (SELECT t.id FROM taken t)
    RETURNING p.id, p.event_id
),
progress AS (
    UPDATE projection_progress SET applied_at = now(),
        events = events + (SELECT count(*) FROM claimed)
    WHERE id = $4 AND EXISTS (SELECT 1 FROM claimed)
)
SELECT * FROM claimed ORDER BY id
"""

_BODIES = """
SELECT e.event_id, e.type, e.body, e.received_at, e.own FROM events e
WHERE e.event_id = ANY($1::text[]) AND e.state = 'processed'
"""

# Parsed a slice at a time, the event loop turning in between: the answers to CALLR
# that this process owes do not wait for a whole batch's parse.
_PARSE_SLICE = 250
# After another projector had the turn: the least wait before asking again, so that
# a standby does not ask at every commit's notification.
_STANDBY_PAUSE = 0.05
# After a failed batch: the pause before the next, 0.5 s doubled at each failure up to
# 30 s (no jitter: one projector per partition, nobody to spread out from).
_FAILED_BATCH_BACKOFF = Backoff(first=0.5, cap=30.0, jitter=0.0)


class Turn(NamedTuple):
    """What one try at a batch did."""

    taken: bool  # False: another projector had the turn
    events: int


class Projector:
    """Applies pending events until stopped; one per process, at work beside the others."""

    def __init__(
        self,
        pool: Pool,
        database_url: str | None = None,
        *,
        batch_max: int = 2000,
        batch_bytes: int = 16 * 1024 * 1024,
        poll_interval: float = 1.0,
        routing_window: timedelta = timedelta(days=7),
        parts_a_batch: int = 4,
    ) -> None:
        """`database_url`: where to LISTEN for other processes' commits (None: poll only);
        `parts_a_batch`: the most partitions of the queue one batch holds."""
        self._parts_a_batch = parts_a_batch
        self._pool = pool
        self._dsn = asyncpg_dsn(database_url) if database_url else None
        self._batch_max = batch_max
        self._batch_bytes = batch_bytes
        self._loop = WorkLoop("projector", self._dsn, PENDING_CHANNEL, poll_interval)
        self._routing_window = routing_window
        # What this process's writer parsed, by event id: applied without reading and
        # parsing the bodies again. Bounded (a backlog that outgrows it is read from
        # the database like the events of other processes): the oldest go first.
        self._parsed: dict[str, Applicable] = {}
        self._keep = 4 * batch_max
        self._failures = Failures("receiver.projector", backoff=_FAILED_BATCH_BACKOFF)

    def wake(self) -> None:
        """There are new pending events (another process committed some)."""
        self._loop.wake()

    def stored(self, reports: Sequence[Applicable]) -> None:
        """This process's writer committed these events: keep what it parsed, and wake."""
        parsed = self._parsed
        for report in reports:
            parsed[report.event_id] = report
        excess = len(parsed) - self._keep
        if excess > 0:
            for event_id in list(itertools.islice(parsed, excess)):
                del parsed[event_id]
        self._loop.wake()

    async def run(self) -> None:
        """Project until cancelled; survives database outages and poisoned events."""
        await self._check_autovacuum()
        await self._loop.run(self._turn)

    async def _turn(self) -> Next:
        turn = await self._try_batch()
        if turn is None:
            return self._failures.pause()
        if turn.events:
            return 0
        if not turn.taken:
            await asyncio.sleep(_STANDBY_PAUSE)
        return None

    async def _check_autovacuum(self) -> None:
        """Warn when autovacuum is off: the queue and the plans of the batches rely on it.

        Without it, the rows the projector deletes are never vacuumed away (each claim
        then walks past them), and the planner's statistics keep describing the tables
        as they were when last analyzed (measured: a drain fell from 13,000 to 2,540
        events a second with the message table analyzed empty; docs/performance.md).
        """
        with contextlib.suppress(*UNAVAILABLE_OR_REFUSED):
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

    async def _try_batch(self) -> Turn | None:
        """One batch; None when it failed (it is pending still, and tried again after a pause).

        Nothing an event causes gets here (it is parked by `apply`): a failure here is
        the database away, not migrated, or a bug. Ending the loop would stop the
        projection while the service looks healthy; saying it at every try would fill
        the log.
        """
        try:
            turn = await self.project_batch()
        except UNAVAILABLE_ERRORS as error:
            self._failures.add("projector_database_unavailable", error, traceback=False)
            return None
        except Exception as error:
            self._failures.add("projector_batch_failed", error, traceback=True)
            return None
        self._failures.clear("projector_recovered")
        return turn

    async def project_batch(self) -> Turn:
        """Claim the next batch of pending events and apply it, if this projector has the turn."""
        started = time.perf_counter()
        for attempt in range(1, TRANSACTION_TRIES + 1):
            try:
                async with self._pool.acquire() as conn, batch_transaction(conn, derived=True):
                    if not await conn.fetchval(_TURN, _TURN_LOCK):
                        return Turn(taken=False, events=0)
                    held = [
                        r["part"]
                        for r in await conn.fetch(_HOLD, PARTS, _PART_LOCK, self._parts_a_batch)
                    ]
                    if not held:
                        # Nothing pending, or every partition with work held by others.
                        return Turn(taken=not await conn.fetchval(_ANY_PENDING), events=0)
                    claimed = await conn.fetch(
                        _CLAIM_NEXT, self._batch_max, self._batch_bytes, held, min(held) + 1
                    )
                    reports = await self._reports(conn, claimed)
                    applied = await apply(conn, reports, routing_window=self._routing_window)
            except RETRYABLE_ERRORS as error:
                log.warning("projector_batch_retried", attempt=attempt, error=str(error))
                continue
            if claimed:
                metrics.OUT_OF_ORDER.inc(applied.late)
                metrics.PROJECTED.inc(len(claimed) - len(applied.parked))
                metrics.PROJECTOR_BATCH_SIZE.observe(len(claimed))
                metrics.PROJECTOR_BATCH_SECONDS.observe(time.perf_counter() - started)
            return Turn(taken=True, events=len(claimed))
        raise RuntimeError("the projector's batch kept conflicting with other transactions")

    async def _reports(self, conn: Connection, claimed: Sequence[Any]) -> list[Applicable]:
        """The SMS snapshots of the claimed events, in the order claimed.

        Those this process's writer stored were parsed already; the others are read
        and parsed again from their raw bodies. An event that is gone (pruned) or no
        longer processed (a replay changed it) has nothing to apply.
        """
        found: dict[str, Applicable] = {}
        unparsed = []
        for row in claimed:
            report = self._parsed.pop(row["event_id"], None)
            if report is None:
                unparsed.append(row["event_id"])
            else:
                found[report.event_id] = report
        if unparsed:
            reports, refused = await _parse(await conn.fetch(_BODIES, unparsed))
            for report in reports:
                found[report.event_id] = report
            if refused:
                # Stored by an older release and refused by today's rules (a time out
                # of range, say): kept as invalid with the reason, like at ingest.
                await conn.execute(_REFUSED, *columns(refused, 2))
        return [found[row["event_id"]] for row in claimed if row["event_id"] in found]


_REFUSED = """
UPDATE events e SET state = 'invalid', reason = u.reason
FROM unnest($1::text[], $2::text[]) AS u(event_id, reason)
WHERE e.event_id = u.event_id
"""


async def _parse(rows: Sequence[Any]) -> tuple[list[Applicable], list[tuple[str, str]]]:
    """The reports of stored events, parsed from their raw bodies a slice at a time, and
    the (event id, reason) of those that today's rules refuse."""
    reports = []
    refused = []
    for start in range(0, len(rows), _PARSE_SLICE):
        for row in rows[start : start + _PARSE_SLICE]:
            parsed = parse_stored(row["event_id"], row["type"], row["body"], own=row["own"])
            if isinstance(parsed, Malformed):
                refused.append((row["event_id"], parsed.reason))
                continue
            report = report_of(row["event_id"], row["received_at"], parsed)
            if report is not None:
                reports.append(report)
        await asyncio.sleep(0)
    return reports, refused
