"""The group-commit writer: many webhook requests, one transaction, each answered after its commit.

A request hands its parsed event to `submit` and waits. Writer tasks take whatever
has queued up (up to `batch_max` items), store it in one transaction, commit, and
only then wake the requests of that batch. While one batch commits, the next one
gathers, so the cost of an fsync is shared by everyone who arrived meanwhile.
A request still waiting at its deadline is told so (`TimeoutError`); its event
may commit later, which CALLR's retry then finds. A batch stores the events, their
deliveries and their place in the projector's queue, nothing else: the message
records, history and forwards are built behind the answer (receiver.projection),
and the writer wakes this process's projector after each commit.

One writer does the work while it keeps up: its batches are larger than two
writers' would be, and a batch costs PostgreSQL less per event the larger it is.
The others stand by and take batches only while the first one's batch has run
longer than `HELP_AFTER`, so that a batch waiting for a lock (held by a replay,
say) does not hold up every request.
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
import structlog

from receiver import metrics
from receiver.callr.envelope import Malformed
from receiver.db.engine import RETRYABLE_ERRORS, TRANSACTION_TRIES, UNAVAILABLE_ERRORS, Pool
from receiver.projection.apply import caused_by_event
from receiver.projection.store import Incoming, Outcome, store_batch, stored_reports
from receiver.reports import Applicable
from receiver.retry import Failures, isolating

log = structlog.get_logger("receiver.writer")


# How long the first writer's batch may run before the other writers take batches
# too. A batch alone takes a few milliseconds under load; with the projector's
# statements and WAL beside it, about 10 ms, and a second writer then overlaps the
# first one's commit: at 20 ms it never did, and the answer rate with the projector
# in the process was 0.44-0.46 of the minimal durable receiver's; at 5 ms, 0.51-0.56,
# the answer path alone unchanged (bench/ratio.py, docs/performance.md).
HELP_AFTER = 0.005


class DatabaseUnavailable(Exception):
    """The batch could not be committed because the database is away: answer 503."""


class Overloaded(Exception):
    """More requests are waiting than the writer accepts: answer 503."""


@dataclass(slots=True)
class _Pending:
    item: Incoming
    future: asyncio.Future[Outcome]


class GroupCommitWriter:
    """Stores submitted items in shared transactions and resolves each after its commit.

    Its pool is its own (`writer_pool`): its connections keep the plans of the batch
    statement (see receiver.db.engine.GENERIC_PLANS).
    """

    def __init__(
        self,
        pool: Pool,
        *,
        batch_max: int,
        concurrency: int,
        queue_max: int,
        ack_timeout: float | None = None,
        stored: Callable[[Sequence[Applicable]], None] | None = None,
    ) -> None:
        """`stored` is given, after each commit, the snapshots of the events it stored for
        the projector (this process's projector applies them without parsing again);
        without it (no projector in the process) none are made."""
        self._pool = pool
        self._batch_max = batch_max
        self._concurrency = concurrency
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_max)
        self._tasks: list[asyncio.Task[None]] = []
        self._stored = stored
        self._ack_timeout = ack_timeout
        # Every submission's (deadline, future), in the order submitted, hence of deadline.
        self._deadlines: deque[tuple[float, asyncio.Future[Outcome]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set while the first writer's batch has run longer than HELP_AFTER.
        self._overdue = asyncio.Event()
        # The database away: a line when it goes, a minute's worth at most, one when back.
        self._outage = Failures("receiver.writer")

    async def start(self) -> None:
        """Start the writer tasks (and, with an ack timeout, the task that enforces it)."""
        # Kept: asyncio's lookup of the running loop makes a system call (getpid).
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._run(), name="writer-0"),
            *(
                asyncio.create_task(self._stand_by(), name=f"writer-{n}")
                for n in range(1, self._concurrency)
            ),
        ]
        if self._ack_timeout is not None:
            self._tasks.append(
                asyncio.create_task(self._expire(self._ack_timeout), name="writer-deadlines")
            )

    async def stop(self) -> None:
        """Commit everything already submitted, then stop the writer tasks."""
        await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def submit(self, item: Incoming) -> Outcome:
        """Wait until `item` is committed and return what it did; raises if it cannot be.

        `TimeoutError` when it is not committed within the ack timeout.
        """
        loop = self._loop
        assert loop is not None, "the writer is not started"
        future: asyncio.Future[Outcome] = loop.create_future()
        try:
            self._queue.put_nowait(_Pending(item, future))
        except asyncio.QueueFull:
            raise Overloaded from None
        if self._ack_timeout is not None:
            self._deadlines.append((loop.time() + self._ack_timeout, future))
        return await future

    async def _expire(self, seconds: float) -> None:
        """Fail what is still waiting at its deadline, at most a tick after it.

        One task for every request: a timer per request (asyncio.timeout) cost a
        twentieth of the worker's time under load.
        """
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        tick = min(seconds / 10, 0.05)
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            while deadlines and (deadlines[0][1].done() or deadlines[0][0] <= now):
                _, future = deadlines.popleft()
                _settle(future, error=TimeoutError())

    async def _run(self) -> None:
        assert self._loop is not None
        while True:
            batch = await self._take()
            overdue = self._loop.call_later(HELP_AFTER, self._overdue.set)
            try:
                await self._write(batch)
            finally:
                overdue.cancel()
                self._overdue.clear()
                self._done(batch)

    async def _stand_by(self) -> None:
        while True:
            await self._overdue.wait()
            batch = await self._take()
            metrics.STANDBY_BATCHES.inc()
            try:
                await self._write(batch)
            finally:
                self._done(batch)

    async def _take(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        while len(batch) < self._batch_max and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    def _done(self, batch: list[_Pending]) -> None:
        for _ in batch:
            self._queue.task_done()

    async def _write(self, batch: list[_Pending]) -> None:
        items = [pending.item for pending in batch]
        try:
            outcomes = await self._store(items)
        except DatabaseUnavailable as error:
            for pending in batch:
                _settle(pending.future, error=error)
            return
        except Exception as error:
            # A bug, not the database: the requests get 503 and CALLR retries;
            # nothing was committed, so nothing is half-stored.
            log.exception("batch_failed", size=len(items))
            for pending in batch:
                _settle(pending.future, error=DatabaseUnavailable(str(error)))
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            _settle(pending.future, outcome=outcome)

    async def _store(self, items: Sequence[Incoming]) -> list[Outcome]:
        """Store a batch; an item whose values the database refuses is split out (and
        kept as invalid) so that the others still commit."""
        return await isolating(
            items,
            self._store_all,
            its_fault=_refused_values,
            alone=self._keep_unstorable,
            join=operator.add,
        )

    async def _store_all(self, items: Sequence[Incoming]) -> list[Outcome]:
        for attempt in range(1, TRANSACTION_TRIES + 1):
            try:
                outcomes = await self._transaction(items)
                self._outage.clear("database_available")
                return outcomes
            except RETRYABLE_ERRORS as error:
                log.warning("batch_retried", size=len(items), attempt=attempt, error=str(error))
            except UNAVAILABLE_ERRORS as error:
                self._outage.add("database_unavailable", error, size=len(items))
                raise DatabaseUnavailable(repr(error)) from error
            except asyncpg.PostgresError as error:
                # The same rule as the projection's (receiver.projection.apply): only
                # what an event's values cause is split out; the rest is the database's.
                if not caused_by_event(error):
                    log.error("batch_refused", size=len(items), error=repr(error))
                    raise DatabaseUnavailable(repr(error)) from error
                raise
        raise DatabaseUnavailable("the batch kept conflicting with concurrent writers")

    async def _keep_unstorable(self, item: Incoming, error: Exception) -> list[Outcome]:
        """The event the database refused, kept raw as invalid, with why."""
        log.error("event_not_storable", event_id=item.key, error=repr(error))
        if isinstance(item.parsed, Malformed):
            raise DatabaseUnavailable(repr(error)) from error
        kept = Incoming(
            parsed=_unstorable(item, error),
            body=item.body,
            received_at=item.received_at,
            headers=item.headers,
            remote_addr=item.remote_addr,
        )
        return await self._store([kept])

    async def _transaction(self, items: Sequence[Incoming]) -> list[Outcome]:
        started = time.perf_counter()
        # One statement, atomic on its own: no BEGIN and COMMIT around it, one round
        # trip a batch. Each round trip waits its turn behind the requests this event
        # loop serves, so the fewer, the shorter the batch and the sooner the answers.
        async with self._pool.acquire() as conn:
            outcomes = await store_batch(conn, items)
        metrics.BATCH_SIZE.observe(len(items))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        if self._stored is not None:
            reports = stored_reports(items, outcomes)
            if reports:
                self._stored(reports)
        return outcomes


def _refused_values(error: Exception) -> bool:
    """PostgreSQL refused an item's values: `_store_all` lets through only the errors
    that `caused_by_event` says an event's values cause (the projection's rule); a
    Python error here is the writer's, never split out."""
    return isinstance(error, asyncpg.PostgresError)


def _unstorable(item: Incoming, error: Exception) -> Malformed:
    """An event that parsed but that the database refused: kept raw, as invalid, with why.

    Only its key, try and fingerprint are kept beside the raw body; whatever else
    the database refused is in the body for a replay to look at.
    """
    parsed = item.parsed
    sqlstate = getattr(error, "sqlstate", None)
    return Malformed(
        key=item.key,
        reason=f"the event could not be stored ({sqlstate}): {error}"[:500],
        type=None,
        attempt=parsed.attempt,
        subscription=None,
        fingerprint=parsed.fingerprint,
    )


def _settle(
    future: asyncio.Future[Outcome],
    *,
    outcome: Outcome | None = None,
    error: Exception | None = None,
) -> None:
    # The request may have given up (its deadline passed): nobody is waiting.
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert outcome is not None
        future.set_result(outcome)
