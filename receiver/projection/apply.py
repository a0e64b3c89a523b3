"""The one way in: stored events become records here, and nowhere else.

Every source of events ends in the same two functions: the projector (CALLR's
webhooks, queued by the answer path), replay and rebuild, CALLR's API answers
(reconcile, backfill), registrations of sends and the steps of sends through the
receiver. `apply` applies stored events (message records, history, evidence, the
steps of sends, the routing of replies, status callbacks); `store_and_apply`
stores events of the receiver's own and applies them, in the caller's transaction.

One error policy holds for all of them. An error that one event's values cause (a
value the database refuses, an index row too large, a constraint, a Python error
on its data) must never stop the others: the reports are applied in a savepoint,
and when one fails the reports are split in halves, each in a savepoint of its own,
down to the one that fails alone. That event is parked: kept, marked `invalid`
with the database's reason, shown in the console and `GET /api/v1/events?state=
invalid`, and applied again by `receiver replay --event ID` once the cause is
fixed. Any other error (the database away, a serialization failure, a deadlock, a
missing table) is not an event's fault: it propagates, the caller's transaction
rolls back whole, and the caller tries again later.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from receiver import metrics
from receiver.callr.envelope import Envelope
from receiver.db.engine import UNAVAILABLE_ERRORS, Connection
from receiver.forwarding.routing import announce, route
from receiver.projection.records import Applied, project
from receiver.projection.sends import apply_steps
from receiver.projection.store import Incoming, Outcome, store_batch, stored_reports
from receiver.reports import Applicable, SendReport, records
from receiver.retry import isolating

log = structlog.get_logger("receiver.projection")

# SQLSTATE classes that are about the values of the statement's rows: 21 cardinality
# (one row twice in an upsert), 22 data exception (out of range, NUL, bad encoding),
# 23 integrity constraint, 54 program limit exceeded (an index row too large).
_DATA_CLASSES = frozenset({"21", "22", "23", "54"})
# Errors of Python's own on a report's values (a number beyond what JSON encodes,
# nesting too deep to encode).
_VALUE_ERRORS = (ValueError, TypeError, ArithmeticError, LookupError, RecursionError)
_REASON_CHARS = 500

_PARK = "UPDATE events SET state = 'invalid', reason = $2 WHERE event_id = $1"


def caused_by_event(error: BaseException) -> bool:
    """Whether `error` is one event's fault (its values), as opposed to the database's state.

    Availability (connection, timeouts, the server shutting down or out of
    resources), serialization failures and deadlocks, and errors about the schema
    (a missing table: not migrated yet) are never an event's fault.
    """
    if isinstance(error, UNAVAILABLE_ERRORS):
        return False
    if isinstance(error, asyncpg.PostgresError):
        return (error.sqlstate or "")[:2] in _DATA_CLASSES
    return isinstance(error, _VALUE_ERRORS)


async def apply(
    conn: Connection, reports: Sequence[Applicable], *, routing_window: timedelta | None
) -> Applied:
    """Apply stored events' reports in the caller's transaction; park those that cannot be.

    `routing_window` None leaves replies unrouted (a rebuild: forwards are kept as
    they are); status callbacks are announced either way.
    """
    if not reports:
        return Applied(late=0, changes=[])

    async def attempt(some: Sequence[Applicable]) -> Applied:
        await conn.execute("SAVEPOINT apply")
        try:
            applied = await _apply(conn, some, routing_window)
        except Exception as error:
            # Only an event's fault is worth going on after; anything else (the
            # connection gone, say) is raised as it came, the transaction the caller's.
            if caused_by_event(error):
                await conn.execute("ROLLBACK TO SAVEPOINT apply")
            raise
        await conn.execute("RELEASE SAVEPOINT apply")
        return applied

    async def park(report: Applicable, error: Exception) -> Applied:
        await _park(conn, report.event_id, error)
        return Applied(late=0, changes=[], parked=[report.event_id])

    # In order, the first half first: replies stay in the order they were stored.
    return await isolating(
        reports, attempt, its_fault=caused_by_event, alone=park, join=Applied.plus
    )


async def _apply(
    conn: Connection, reports: Sequence[Applicable], routing_window: timedelta | None
) -> Applied:
    snapshots = records(reports)
    applied = await project(conn, snapshots)
    steps = [report.step for report in reports if isinstance(report, SendReport)]
    if steps:
        await apply_steps(conn, steps)
    if routing_window is not None:
        await route(conn, snapshots, window=routing_window)
    await announce(conn, applied.changes)
    return applied


async def _park(conn: Connection, event_id: str, error: BaseException) -> None:
    """Keep the event that cannot be applied as invalid, with the reason."""
    sqlstate = getattr(error, "sqlstate", None) or type(error).__name__
    reason = f"the event could not be applied ({sqlstate}): {error}"[:_REASON_CHARS]
    await conn.execute(_PARK, event_id, reason)
    metrics.PROJECTION_FAILED.inc()
    log.error("event_parked", event_id=event_id, reason=reason)


async def store_and_apply(
    conn: Connection,
    events: Sequence[tuple[Envelope, bytes]],
    *,
    source: str,
    routing_window: timedelta,
) -> int:
    """Store events of the receiver's own and apply them, in the caller's transaction.

    `source` is kept with each delivery (what made the event). Returns how many
    were new (the others were stored already: nothing changes). Inbound SMS are
    routed to their handlers, except quiet ones.
    """
    now = datetime.now(UTC)
    items = [
        Incoming(
            parsed=envelope,
            body=body,
            received_at=now,
            headers={"x-receiver-source": source},
            remote_addr=None,
        )
        for envelope, body in events
    ]
    outcomes, _ = await store_then_apply(conn, items, own=True, routing_window=routing_window)
    return len(stored_reports(items, outcomes))


async def store_then_apply(
    conn: Connection,
    items: Sequence[Incoming],
    *,
    own: bool,
    routing_window: timedelta | None,
    beside: Sequence[Applicable] = (),
) -> tuple[list[Outcome], Applied]:
    """Store `items` and apply what they report (after `beside`, reports of events stored
    already), in the caller's transaction: nothing is left pending for a projector."""
    outcomes = await store_batch(conn, items, pending=False, own=own) if items else []
    reports = [*beside, *stored_reports(items, outcomes)]
    return outcomes, await apply(conn, reports, routing_window=routing_window)
