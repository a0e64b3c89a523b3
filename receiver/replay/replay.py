"""Replay and rebuild: stored events through today's parsing, projection and routing.

Replay pages through the selected events in the order they were received, parses
each raw body again, records what the parse now says (state, type, reason), and
applies the same projection (and routing, for replies) as live ingest, one
transaction per page. The projection depends on the set of events only and
applying an event twice changes nothing, so a replay can be repeated, stopped and
run again, and can run while webhooks arrive.

Rebuild (rebuild.py) replays every event into tables of its own; paging.py reads the
events a page at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from receiver.callr.envelope import Envelope, Malformed, parse_envelope
from receiver.db.arrays import columns
from receiver.db.engine import Connection, Pool, Record
from receiver.projection.apply import store_then_apply
from receiver.projection.store import Incoming, Result, event_state
from receiver.replay.paging import (
    EventFilter,
    Page,
    Pager,
    ReadFailed,
    count,
    read_pages,
    received_order,
)
from receiver.reports import report_of

_UPDATE_EVENTS = """
UPDATE events e SET state = u.state, type = u.type, emitted_at = u.emitted_at,
    reason = u.reason, sms_id = u.sms_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[])
    AS u(event_id, state, type, emitted_at, reason, sms_id)
WHERE e.event_id = u.event_id
"""


# Where a rebuild writes until it is done, and the tables it writes there.
SHADOW = "receiver_rebuild"


REBUILT = ("messages", "transitions", "observations", "sends")


SEARCH_SHADOW = f"SET LOCAL search_path TO {SHADOW}, public"


ANALYZE_AFTER = 20_000


class StopFlag(Protocol):
    """Set to stop after the page in hand (an asyncio or a multiprocessing event)."""

    def is_set(self) -> bool: ...


@dataclass
class ReplaySummary:
    """How far a replay got and what it changed."""

    total: int = 0
    replayed: int = 0
    changed: int = 0
    reingested: int = 0
    parked: int = 0
    """Events that could not be applied: kept as invalid, with the reason."""
    by_state: dict[str, int] = field(default_factory=dict)
    stopped: bool = False
    swap_seconds: float = 0.0
    """A rebuild's last transaction: the tail applied again and the records put in place."""
    tail: int = 0
    """The events a rebuild applied again in its last transaction."""

    def line(self) -> str:
        states = ", ".join(f"{n} {state}" for state, n in sorted(self.by_state.items()))
        head = f"replayed {self.replayed} of {self.total} events"
        tail = f" ({states}); {self.changed} changed state, {self.reingested} stored anew"
        if self.parked:
            tail += f"; {self.parked} could not be applied (kept as invalid, see their reason)"
        if self.stopped:
            tail += "; stopped early: run the same command again to finish (it is safe)"
        return head + tail


async def replay(
    pool: Pool,
    selection: EventFilter,
    *,
    batch: int = 1000,
    routing_window: timedelta | None = timedelta(days=7),
    advance: Callable[[int], None] = lambda n: None,
    stop: StopFlag | None = None,
    total: int | None = None,
    pager: Pager | None = None,
    shadow: bool = False,
) -> ReplaySummary:
    """Replay the selected events page by page; stops cleanly after a page when `stop` is set.

    `routing_window` None leaves the forwards alone (what rebuild does); `total`
    is how many events match, when the caller has counted them already; `shadow`
    writes the records into a rebuild's tables (`SHADOW`) instead of the live ones.
    """
    summary = ReplaySummary(total=total or 0)
    if total is None:
        async with pool.acquire() as conn:
            summary.total = sum(n for _, _, n in await count(conn, selection))
    # Parsing is Python's work and applying is PostgreSQL's: the next page is read
    # and parsed while the current one is applied, so the two overlap.
    pages: asyncio.Queue[Page | ReadFailed | None] = asyncio.Queue(maxsize=2)
    reader = asyncio.create_task(read_pages(pool, pager or received_order(selection), batch, pages))
    try:
        while not (stop is not None and stop.is_set()):
            page = await pages.get()
            if page is None:
                break
            if isinstance(page, ReadFailed):
                raise page.error
            async with pool.acquire() as conn, conn.transaction():
                if shadow:
                    await conn.execute(SEARCH_SHADOW)
                await apply_page(conn, page, summary, routing_window=routing_window)
            if shadow and summary.replayed < ANALYZE_AFTER <= summary.replayed + len(page.rows):
                # The new tables start with no statistics: the planner learns their
                # shape once their first pages are in.
                async with pool.acquire() as conn:
                    await conn.execute(f"ANALYZE {', '.join(f'{SHADOW}.{t}' for t in REBUILT)}")
            summary.replayed += len(page.rows)
            advance(len(page.rows))
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    summary.stopped = summary.replayed < summary.total and stop is not None and stop.is_set()
    return summary


async def apply_page(
    conn: Connection,
    page: Page,
    summary: ReplaySummary,
    *,
    routing_window: timedelta | None,
) -> None:
    updates, reports, reingest = [], [], []
    for row, parsed in zip(page.rows, page.parsed, strict=True):
        key = parsed.event_id if isinstance(parsed, Envelope) else parsed.key
        if isinstance(parsed, Malformed) and key != row["event_id"]:
            # Refused by today's rules (a webhook that took the receiver's own type or
            # id, say): the row keeps its id and says why.
            parsed = parsed._replace(key=row["event_id"])
        elif key != row["event_id"]:
            # A body kept under the hash of its bytes that today's code reads as a
            # real event: stored anew under its own id, like a new delivery.
            reingest.append(_incoming(parse_envelope(row["body"]), row))
            parsed = Malformed(
                key=row["event_id"],
                reason=f"stored again as event {key}",
                type=None,
                attempt=None,
                subscription=None,
                fingerprint=b"",
            )
        state = event_state(parsed).value
        summary.by_state[state] = summary.by_state.get(state, 0) + 1
        fields = _event_fields(parsed)
        current = (row["state"], row["type"], row["emitted_at"], row["reason"], row["sms_id"])
        if (state, *fields) != current:
            updates.append((row["event_id"], state, *fields))
            summary.changed += state != row["state"]
        report = report_of(row["event_id"], row["received_at"], parsed)
        if report is not None:
            reports.append(report)
    if updates:
        await conn.execute(_UPDATE_EVENTS, *columns(updates, 6))
    # The one way in (receiver.projection.apply), the bodies stored again under their
    # own ids with it, in this transaction: an event that cannot be applied is parked,
    # the rest of the page applied. Also in a rebuild, a status no handler was told of
    # is announced; one it was told of, or an older one, is not.
    outcomes, applied = await store_then_apply(
        conn, reingest, own=False, routing_window=routing_window, beside=reports
    )
    summary.reingested += sum(o.result is not Result.DUPLICATE for o in outcomes)
    summary.parked += len(applied.parked)


def _event_fields(
    parsed: Envelope | Malformed,
) -> tuple[str | None, datetime | None, str | None, str | None]:
    """(type, emitted_at, reason, sms_id) as the events table keeps them."""
    if isinstance(parsed, Malformed):
        return parsed.type, None, parsed.reason, None
    return parsed.type, parsed.emitted_at, None, parsed.sms.sms_id if parsed.sms else None


def _incoming(parsed: Envelope | Malformed, row: Record) -> Incoming:
    return Incoming(
        parsed=parsed,
        body=row["body"],
        received_at=row["received_at"],
        headers={},
        remote_addr=None,
    )
