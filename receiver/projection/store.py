"""Storing a batch of webhook deliveries: one set-based statement, atomic on its own.

This is all the answer path writes: the event (once per id) with its raw body, the
delivery, a row in `projection_pending` for each new event of a handled type (the
projector applies it behind the answer), and the mark of the day received for the
daily statistics.

Idempotency lives in the constraints (`events.event_id`, the deliveries'
`(event_id, attempt, fingerprint)`), never in a check-then-insert: two receivers
taking the same event at once both end with one row, and both can answer 200.
Rows are inserted in key order so that concurrent batches lock in the same order
and cannot deadlock each other.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import orjson

from receiver.callr.envelope import Envelope, Malformed
from receiver.db.engine import Connection
from receiver.db.models import EventState
from receiver.reports import Applicable, report_of


class Result(enum.StrEnum):
    """What one delivery did to the store; the webhook answer says it to CALLR."""

    STORED = "stored"
    """A new event of a handled type."""
    UNHANDLED = "unhandled"
    """A new event of a type this service keeps but does not act on."""
    DUPLICATE = "duplicate"
    """An event already stored: a retry, a repeat or a second subscription."""
    INVALID = "invalid"
    """A body that is not a valid event; stored all the same."""


PARTS = 16
"""The partitions of the projection queue (migration 0018): fixed, since a number's
events must stay in one."""


def part_of(parsed: Envelope | Malformed) -> int:
    """The partition of an event: by the phone number on the far side of its SMS.

    An outbound SMS's `to`, an inbound one's `from`: an MT, its reports and the
    replies from its recipient share a partition, so a projector applies them in the
    order they were stored, and the replies of one number are forwarded in order.
    An event with no number falls back on its SMS id, then its own id.
    """
    sms = parsed.sms if isinstance(parsed, Envelope) else None
    if sms is None:
        key = parsed.event_id if isinstance(parsed, Envelope) else parsed.key
    else:
        key = (sms.to_number if sms.direction == "outbound" else sms.from_number) or sms.sms_id
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % PARTS


@dataclass(frozen=True, slots=True)
class Incoming:
    """One authenticated webhook request, parsed, ready to be stored."""

    parsed: Envelope | Malformed
    body: bytes
    received_at: datetime
    headers: dict[str, str]
    remote_addr: str | None

    @property
    def key(self) -> str:
        """The event id this request is stored under."""
        return self.parsed.event_id if isinstance(self.parsed, Envelope) else self.parsed.key


@dataclass(frozen=True, slots=True)
class Outcome:
    """The stored result of one request."""

    result: Result
    event_id: str
    new_delivery: bool
    conflict: bool
    # Why it was stored as invalid: the body's fault, or what the database refused.
    reason: str | None = None


# Events and deliveries in one statement, one round trip. The rows travel as one
# JSON parameter (asyncpg encodes array parameters element by element in Python,
# which costs several times more), the raw bodies beside it as one bytea array,
# matched by position.
#
# A delivery needs its event's stored fingerprint, to tell a conflicting body. An
# event this statement inserts gives it in the insert's RETURNING (no read in the
# statement can see the row); an older one is looked up by key, once, in a lateral
# subquery (the planner cannot turn it into a join over the whole table). Neither
# finds an event that a concurrent batch committed while this insert waited for it
# (the statement's snapshot is older): such a delivery comes back `unseen`, and is
# sent again in a statement of its own, whose fresh snapshot holds the event.
_INSERT = """
WITH r AS (
    SELECT r.*, decode(r.fingerprint, 'hex') AS key, b.body
    FROM json_to_recordset($1::json)
        AS r(ord int, event_id text, type text, emitted_at timestamptz, received_at timestamptz,
             state text, reason text, subscription text, sms_id text, fingerprint text,
             attempt int, headers jsonb, remote_addr text, part smallint)
    JOIN unnest($2::bytea[]) WITH ORDINALITY AS b(body, n) ON b.n = r.ord + 1
),
created AS (
    INSERT INTO events AS e
        (event_id, type, emitted_at, received_at, state, reason, subscription, sms_id,
         fingerprint, body, own)
    SELECT DISTINCT ON (r.event_id)
        r.event_id, r.type, r.emitted_at, r.received_at, r.state, r.reason, r.subscription,
        r.sms_id, r.key, r.body, $5::boolean
    FROM r
    ORDER BY r.event_id, r.ord
    ON CONFLICT (event_id) DO NOTHING
    RETURNING e.event_id, e.fingerprint, e.state, e.received_at, octet_length(e.body) AS bytes
),
pending AS (
    INSERT INTO projection_pending (event_id, received_at, bytes, part)
    SELECT c.event_id, c.received_at, c.bytes, p.part
    FROM created c
    JOIN (SELECT DISTINCT ON (r.event_id) r.event_id, r.part FROM r ORDER BY r.event_id, r.ord)
        AS p ON p.event_id = c.event_id
    WHERE $3::boolean AND c.state = 'processed'
    ORDER BY c.received_at, c.event_id
    RETURNING 1
),
marked AS (
    INSERT INTO stats_changes (day)
    SELECT DISTINCT (r.received_at AT TIME ZONE 'UTC')::date FROM r
),
-- The projectors of other processes are woken on commit, once a batch; this one's
-- projector is told by the writer.
notified AS (
    SELECT pg_notify($4, '') FROM (SELECT 1 FROM pending LIMIT 1) AS any_
),
i AS (
    SELECT r.ord, r.event_id, r.attempt, r.key AS fingerprint, r.received_at, r.subscription,
        r.headers, r.remote_addr, r.body, c.event_id IS NOT NULL AS created,
        COALESCE(c.fingerprint, older.fingerprint) AS stored
    FROM r
    LEFT JOIN created c ON c.event_id = r.event_id
    LEFT JOIN LATERAL (
        SELECT e.fingerprint FROM events e WHERE e.event_id = r.event_id LIMIT 1
    ) AS older ON c.event_id IS NULL
),
inserted AS (
    INSERT INTO deliveries AS d
        (event_id, attempt, fingerprint, conflict, received_at, subscription, headers,
         remote_addr, body)
    SELECT i.event_id, i.attempt, i.fingerprint, i.fingerprint <> i.stored,
           i.received_at, i.subscription, i.headers, i.remote_addr,
           -- A conflicting delivery keeps its own body: the event keeps the first.
           CASE WHEN i.fingerprint <> i.stored THEN i.body END
    FROM i
    WHERE i.stored IS NOT NULL
    ORDER BY i.event_id, i.attempt, i.ord
    ON CONFLICT (event_id, attempt, fingerprint) DO NOTHING
    RETURNING d.id, d.event_id, d.attempt, d.fingerprint
)
-- `notified` is read so that it runs: a CTE that only selects runs when referenced.
SELECT i.ord, i.created, i.stored IS NULL AS unseen, i.fingerprint <> i.stored AS conflict,
    inserted.id AS delivery_id, (SELECT count(*) FROM notified) AS notified
FROM i
LEFT JOIN inserted
    ON inserted.event_id = i.event_id
    AND inserted.attempt IS NOT DISTINCT FROM i.attempt
    AND inserted.fingerprint = i.fingerprint
"""

# Where the statement wakes the projectors of other processes (receiver.projection.projector).
PENDING_CHANNEL = "receiver_projection"


async def store_batch(
    conn: Connection, items: Sequence[Incoming], *, pending: bool = True, own: bool = False
) -> list[Outcome]:
    """Store every item's event (once per id) and delivery (once per id, try and content).

    `pending`: the new events wait for the projector; a replay that stores events
    again projects them itself, in the same transaction, and passes False.
    `own`: the events are the receiver's own (receiver.callr.own), made by the code
    that calls; only `store_and_apply` says so, never the webhook or a replay.
    """
    rows = await _insert(conn, items, pending, own)
    created = {items[ord_].key for ord_, row in rows.items() if row.created}
    outcomes: list[Outcome] = []
    claimed_events: set[str] = set()
    claimed_deliveries: set[int] = set()
    for ord_, item in enumerate(items):
        conflict, delivery_id = bool(rows[ord_].conflict), rows[ord_].delivery_id
        first_of_event = item.key in created and item.key not in claimed_events
        if first_of_event:
            claimed_events.add(item.key)
        new_delivery = False
        if delivery_id is not None and delivery_id not in claimed_deliveries:
            new_delivery = True
            claimed_deliveries.add(delivery_id)
        outcomes.append(
            Outcome(
                result=_result(item, first_of_event),
                event_id=item.key,
                new_delivery=new_delivery,
                conflict=conflict,
                reason=item.parsed.reason if isinstance(item.parsed, Malformed) else None,
            )
        )
    return outcomes


def _result(item: Incoming, first_of_event: bool) -> Result:
    parsed = item.parsed
    if isinstance(parsed, Malformed):
        return Result.INVALID
    if not first_of_event:
        return Result.DUPLICATE
    return Result.STORED if parsed.handled else Result.UNHANDLED


def event_state(parsed: Envelope | Malformed) -> EventState:
    """The state an event is stored in, from what its parse found."""
    if isinstance(parsed, Malformed):
        return EventState.INVALID
    return EventState.PROCESSED if parsed.handled else EventState.UNHANDLED


async def _insert(
    conn: Connection, items: Sequence[Incoming], pending: bool, own: bool
) -> dict[int, _Stored]:
    """What the insert did for each item, by position."""
    stored = await _insert_once(conn, items, pending, own)
    unseen = [ord_ for ord_, row in stored.items() if row.unseen]
    if unseen:
        again = await _insert_once(conn, [items[ord_] for ord_ in unseen], pending, own)
        if any(row.unseen for row in again.values()):
            raise RuntimeError("an event was neither stored nor found twice in a row")
        stored.update({unseen[n]: row for n, row in again.items()})
    return stored


class _Stored(NamedTuple):
    created: bool
    unseen: bool
    conflict: bool | None
    delivery_id: int | None


async def _insert_once(
    conn: Connection, items: Sequence[Incoming], pending: bool, own: bool
) -> dict[int, _Stored]:
    rows = []
    for ord_, item in enumerate(items):
        parsed = item.parsed
        envelope = parsed if isinstance(parsed, Envelope) else None
        rows.append(
            {
                "ord": ord_,
                "event_id": item.key,
                "type": parsed.type,
                "emitted_at": envelope.emitted_at if envelope else None,
                "received_at": item.received_at,
                "state": event_state(parsed).value,
                "reason": parsed.reason if isinstance(parsed, Malformed) else None,
                "subscription": parsed.subscription,
                "sms_id": envelope.sms.sms_id if envelope and envelope.sms else None,
                "fingerprint": parsed.fingerprint.hex(),
                "attempt": parsed.attempt,
                "headers": item.headers,
                "remote_addr": item.remote_addr,
                "part": part_of(parsed) if pending else 0,
            }
        )
    bodies = [item.body for item in items]
    records = await conn.fetch(
        _INSERT, orjson.dumps(rows).decode(), bodies, pending, PENDING_CHANNEL, own
    )
    return {record["ord"]: _Stored(*record[1:5]) for record in records}


def stored_reports(items: Sequence[Incoming], outcomes: Sequence[Outcome]) -> list[Applicable]:
    """The SMS snapshots of the events this batch stored first: what the projection applies."""
    reports = []
    for item, outcome in zip(items, outcomes, strict=True):
        if outcome.result is Result.STORED:
            report = report_of(outcome.event_id, item.received_at, item.parsed)
            if report is not None:
                reports.append(report)
    return reports
