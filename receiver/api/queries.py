"""The read-only query routes for dashboards: messages, events, forwards.

Lists are newest first with keyset pagination (`next_cursor`): a page is found by
an index seek from the last item of the previous one, however deep, and a new row
never shifts the pages after it.
"""

from __future__ import annotations

import base64
from datetime import datetime

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from receiver.api.export import Selection, export_response
from receiver.api.models import (
    EventDetail,
    EventPage,
    EventsQuery,
    ForwardPage,
    ForwardsQuery,
    MessageDetail,
    MessagePage,
    MessagesExportQuery,
    MessagesQuery,
    answer,
)
from receiver.api.models.queries import MessageFilters
from receiver.api.models.reads import Message, MessageFound, Page
from receiver.api.numbers import number_prefix
from receiver.api.params import BadParameter, Cursors, read_query
from receiver.db.engine import Connection, Record
from receiver.db.models import EventState, ForwardState
from receiver.http import error_response
from receiver.status import Status

STATUSES = [status.value for status in Status]
EVENT_STATES = [state.value for state in EventState]
FORWARD_STATES = [state.value for state in ForwardState]

_MESSAGE_COLUMNS = """
    m.sms_id, m.direction, m.from_number, m.to_number, m.text, m.user_data, m.status,
    m.provider_status, m.status_at, m.created_at, m.sent_at, m.delivered_at, m.parts,
    m.cost, m.cost_cents, m.network, m.encoding, m.nature, m.error, m.anomaly
"""

_MESSAGE = f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.sms_id = $1"
_MESSAGE_ID = "SELECT sms_id FROM messages WHERE sms_id = $1"

# The page's keys first, by an index-only scan where an index covers the filters
# (network and user_data indexes carry status and direction); then only the rows
# of the page itself are read.
_MESSAGES = f"""
SELECT {_MESSAGE_COLUMNS} FROM (
SELECT m.sms_id, m.status_at FROM messages m
WHERE ($1::text IS NULL OR m.direction = $1)
  AND (cardinality($2::text[]) = 0 OR m.status = ANY($2::text[]))
  AND ($3::text IS NULL OR m.user_data = $3)
  AND ($4::text IS NULL OR m.from_number = $4)
  AND ($5::text IS NULL OR m.to_number = $5)
  AND ($6::text IS NULL OR m.network = $6)
  AND ($7::timestamptz IS NULL OR m.status_at >= $7)
  AND ($8::timestamptz IS NULL OR m.status_at < $8)
  AND ($9::timestamptz IS NULL OR (m.status_at, m.sms_id) < ($9, $10::text))
ORDER BY m.status_at DESC, m.sms_id DESC
LIMIT $11
) page
JOIN messages m ON m.sms_id = page.sms_id
ORDER BY page.status_at DESC, page.sms_id DESC
"""

# The same page for a phone number or its start, sent or received: the newest of
# each side, from the prefix index of `to_number` and of `from_number` (which carry
# the page's keys, status and direction), or from the newest-first index filtered,
# whichever the planner finds cheaper for the prefix at hand; then the two merged.
_NUMBER_FILTERS = """
  ($3::text IS NULL OR m.direction = $3)
  AND (cardinality($4::text[]) = 0 OR m.status = ANY($4::text[]))
  AND ($5::text IS NULL OR m.user_data = $5)
  AND ($6::text IS NULL OR m.network = $6)
  AND ($7::timestamptz IS NULL OR m.status_at >= $7)
  AND ($8::timestamptz IS NULL OR m.status_at < $8)
  AND ($9::timestamptz IS NULL OR (m.status_at, m.sms_id) < ($9, $10::text))
"""
_MESSAGES_BY_NUMBER = f"""
SELECT {_MESSAGE_COLUMNS} FROM (
SELECT sms_id, status_at FROM (
    (SELECT m.sms_id, m.status_at FROM messages m
     WHERE m.to_number ~>=~ $1 AND m.to_number ~<~ $2 AND {_NUMBER_FILTERS}
     ORDER BY m.status_at DESC, m.sms_id DESC LIMIT $11)
    UNION
    (SELECT m.sms_id, m.status_at FROM messages m
     WHERE m.from_number ~>=~ $1 AND m.from_number ~<~ $2 AND {_NUMBER_FILTERS}
     ORDER BY m.status_at DESC, m.sms_id DESC LIMIT $11)
) either
ORDER BY status_at DESC, sms_id DESC
LIMIT $11
) page
JOIN messages m ON m.sms_id = page.sms_id
ORDER BY page.status_at DESC, page.sms_id DESC
"""

# Each step with when the report that shows it (or, derived, the report it was
# inferred from) arrived.
_HISTORY = """
SELECT t.before, t.after, t.at, t.derived, t.event_id, e.received_at AS reported_at
FROM transitions t LEFT JOIN events e ON e.event_id = t.event_id
WHERE t.sms_id = $1 ORDER BY t.at, t.id
"""

_MESSAGE_EVENTS = """
SELECT e.event_id, e.type, e.received_at, e.state,
    array(SELECT DISTINCT d.attempt FROM deliveries d
          WHERE d.event_id = e.event_id AND d.attempt IS NOT NULL ORDER BY 1) AS tries
FROM events e WHERE e.sms_id = $1 ORDER BY e.received_at, e.event_id
"""

_FORWARD_COLUMNS = """
    f.id, f.kind, f.event_id, f.sms_id, f.handler_id, f.rule, f.user_data, f.mt_sms_id,
    f.status_before, f.status_after, f.state, f.attempts, f.next_attempt_at, f.created_at,
    f.delivered_at, f.last_error
"""

_MESSAGE_FORWARDS = f"SELECT {_FORWARD_COLUMNS} FROM forwards f WHERE f.sms_id = $1 ORDER BY f.id"

_EVENTS = """
SELECT e.event_id, e.type, e.emitted_at, e.received_at, e.state, e.reason, e.sms_id
FROM events e
WHERE ($1::text IS NULL OR e.type = $1)
  AND ($2::text IS NULL OR e.state = $2)
  AND ($3::timestamptz IS NULL OR e.received_at >= $3)
  AND ($4::timestamptz IS NULL OR e.received_at < $4)
  AND ($5::timestamptz IS NULL OR (e.received_at, e.event_id) < ($5, $6::text))
ORDER BY e.received_at DESC, e.event_id DESC
LIMIT $7
"""

_EVENT = """
SELECT e.event_id, e.type, e.emitted_at, e.received_at, e.state, e.reason, e.sms_id,
    e.subscription, e.body
FROM events e WHERE e.event_id = $1
"""

_DELIVERIES = """
SELECT attempt, received_at, headers, conflict, subscription, remote_addr, body
FROM deliveries WHERE event_id = $1 ORDER BY id
"""

_FORWARDS = f"""
SELECT {_FORWARD_COLUMNS} FROM forwards f
WHERE ($1::text IS NULL OR f.state = $1)
  AND ($2::bigint IS NULL OR f.handler_id = $2)
  AND ($3::timestamptz IS NULL OR f.created_at >= $3)
  AND ($4::timestamptz IS NULL OR f.created_at < $4)
  AND ($5::bigint IS NULL OR f.id < $5)
ORDER BY f.id DESC
LIMIT $6
"""


def _message(row: Record) -> Message:
    return {
        "id": row["sms_id"],
        "direction": row["direction"],
        "from": row["from_number"],
        "to": row["to_number"],
        "text": row["text"],
        "user_data": row["user_data"],
        "status": row["status"],
        "provider_status": row["provider_status"],
        "status_at": row["status_at"],
        "created_at": row["created_at"],
        "sent_at": row["sent_at"],
        "delivered_at": row["delivered_at"],
        "parts": row["parts"],
        "cost": str(row["cost"]) if row["cost"] is not None else None,
        "cost_cents": str(row["cost_cents"]) if row["cost_cents"] is not None else None,
        "network": row["network"],
        "encoding": row["encoding"],
        "nature": row["nature"],
        "error": row["error"],
        "anomaly": row["anomaly"],
    }


def _body(raw: bytes) -> dict[str, object]:
    """A raw body as JSON can carry it: the text when it is UTF-8, always the base64."""
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"body": text, "body_base64": base64.b64encode(raw).decode()}


class Queries:
    """The query endpoints; cursors are signed with a key derived from the API tokens.

    Each `*_page` / `*_detail` method reads on a connection and returns the data, so
    that the console shows exactly what the API answers.
    """

    def __init__(self, cursors: Cursors, *, region: str | None = None) -> None:
        """`region`: RECEIVER_DEFAULT_REGION, whose national numbers searches read."""
        self._cursors = cursors
        self.region = region

    async def message(self, request: Request) -> Response:
        sms_id = request.path_params["sms_id"]
        async with request.state.reads.acquire() as conn:
            found = await message_detail(conn, sms_id)
        if found is None:
            return error_response(404, f"no message {sms_id.strip().lower()!r}")
        return answer(MessageDetail, found)

    async def messages(self, request: Request) -> Response:
        async with request.state.reads.acquire() as conn:
            return answer(MessagePage, await self.messages_page(conn, request.query_params))

    async def messages_page(self, conn: Connection, query: QueryParams) -> Page:
        """A page of messages for the filters in `query`; raises `BadParameter`."""
        q = read_query(MessagesQuery, query)
        sql, keys = self._chosen(q)
        limit = q.limit
        after = self._position(q.cursor)
        rows = await conn.fetch(sql, *keys, *after, limit + 1)
        items = [_message(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = self._cursors.encode([last["status_at"].isoformat(), last["sms_id"]])
        # The number as searched: what a national one was read as.
        searched = None if q.number is None else number_prefix(q.number, self.region)[0]
        return {"items": items, "next_cursor": next_cursor, "number_searched": searched}

    async def export(self, request: Request) -> Response:
        form, selection = self.messages_export(request.query_params)
        return export_response(request, request.state.reads, selection, form)

    def messages_export(self, query: QueryParams) -> tuple[str, Selection]:
        """The format and the selection of every message the filters in `query` choose
        (the pages' own statement, with no page); raises `BadParameter`."""
        q = read_query(MessagesExportQuery, query)
        sql, keys = self._chosen(q)
        return q.format, Selection(sql, (*keys, None, None, None))

    def _chosen(self, q: MessageFilters) -> tuple[str, tuple[object, ...]]:
        """The statement that lists the messages `q` chooses, and its arguments but the
        position and the limit."""
        direction, user_data, network, number = q.direction, q.user_data, q.network, q.number
        statuses = [status.value for status in q.status]
        numbers = (q.from_, q.to)
        if number is not None:
            if any(numbers):
                raise BadParameter("number", "number searches both from and to: give one")
            keys: tuple[object, ...] = (
                *number_prefix(number, self.region),
                direction,
                statuses,
                user_data,
                network,
            )
            return _MESSAGES_BY_NUMBER, (*keys, q.since, q.until)
        return _MESSAGES, (direction, statuses, user_data, *numbers, network, q.since, q.until)

    async def events(self, request: Request) -> Response:
        async with request.state.reads.acquire() as conn:
            return answer(EventPage, await self.events_page(conn, request.query_params))

    async def events_page(self, conn: Connection, query: QueryParams) -> Page:
        """A page of events for the filters in `query`; raises `BadParameter`."""
        q = read_query(EventsQuery, query)
        state = q.state.value if q.state else None
        limit = q.limit
        after = self._position(q.cursor)
        rows = await conn.fetch(_EVENTS, q.type, state, q.since, q.until, *after, limit + 1)
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = self._cursors.encode([last["received_at"].isoformat(), last["event_id"]])
        return {"items": [dict(r) for r in rows[:limit]], "next_cursor": next_cursor}

    async def event(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        async with request.state.reads.acquire() as conn:
            found = await event_detail(conn, event_id)
        if found is None:
            return error_response(404, f"no event {event_id!r}")
        return answer(EventDetail, found)

    async def forwards(self, request: Request) -> Response:
        async with request.state.reads.acquire() as conn:
            return answer(ForwardPage, await self.forwards_page(conn, request.query_params))

    async def forwards_page(self, conn: Connection, query: QueryParams) -> Page:
        """A page of forwards for the filters in `query`; raises `BadParameter`."""
        q = read_query(ForwardsQuery, query)
        state = q.state.value if q.state else None
        limit = q.limit
        position = self._cursors.decode(q.cursor)
        if position is not None and not (len(position) == 1 and isinstance(position[0], int)):
            raise BadParameter("cursor", "cursor is not one this API gave")
        after = position[0] if position else None
        rows = await conn.fetch(_FORWARDS, state, q.handler, q.since, q.until, after, limit + 1)
        next_cursor = self._cursors.encode([rows[limit - 1]["id"]]) if len(rows) > limit else None
        return {"items": [dict(r) for r in rows[:limit]], "next_cursor": next_cursor}

    def _position(self, cursor: str | None) -> tuple[datetime, str] | tuple[None, None]:
        position = self._cursors.decode(cursor)
        if position is None:
            return (None, None)
        at, key = position if len(position) == 2 else (None, None)
        if not isinstance(at, str) or not isinstance(key, str):
            raise BadParameter("cursor", "cursor is not one this API gave")
        try:
            return (datetime.fromisoformat(at), key)
        except ValueError:
            raise BadParameter("cursor", "cursor is not one this API gave") from None


def _stored_form(sms_id: str) -> str | None:
    """An SMS id as stored (lower case); None when no stored id can be it."""
    sms_id = sms_id.strip().lower()
    # No stored id holds a NUL: PostgreSQL's text cannot.
    return None if "\x00" in sms_id else sms_id


async def message_id(conn: Connection, sms_id: str) -> str | None:
    """The stored id of the SMS `sms_id` (any case); None when there is no such SMS."""
    stored = _stored_form(sms_id)
    return None if stored is None else await conn.fetchval(_MESSAGE_ID, stored)


_RECONCILIATION = """
SELECT checks, checked_at, unknown, answer_status FROM reconciliations WHERE sms_id = $1
"""


async def message_detail(conn: Connection, sms_id: str) -> MessageFound | None:
    """One message with its history, events and forwards; None when there is none."""
    stored = _stored_form(sms_id)
    if stored is None:
        return None
    row = await conn.fetchrow(_MESSAGE, stored)
    if row is None:
        return None
    history = await conn.fetch(_HISTORY, stored)
    events = await conn.fetch(_MESSAGE_EVENTS, stored)
    forwards = await conn.fetch(_MESSAGE_FORWARDS, stored)
    checked = await conn.fetchrow(_RECONCILIATION, stored)
    return {
        **_message(row),
        "history": [dict(step) for step in history],
        "events": [dict(event) for event in events],
        "forwards": [dict(forward) for forward in forwards],
        "reconciliation": dict(checked) if checked is not None else None,
    }


async def event_detail(conn: Connection, event_id: str) -> dict[str, object] | None:
    """One event with its raw body and every delivery; None when there is none."""
    if "\x00" in event_id:  # no stored id holds one: PostgreSQL's text cannot
        return None
    row = await conn.fetchrow(_EVENT, event_id)
    if row is None:
        return None
    deliveries = await conn.fetch(_DELIVERIES, event_id)
    event = {k: v for k, v in dict(row).items() if k != "body"}
    return {
        **event,
        **_body(row["body"]),
        "deliveries": [
            {
                "try": d["attempt"],
                "received_at": d["received_at"],
                "headers": orjson.loads(d["headers"]),
                "conflict": d["conflict"],
                "subscription": d["subscription"],
                "remote_addr": d["remote_addr"],
                **(_body(d["body"]) if d["body"] is not None else {}),
            }
            for d in deliveries
        ],
    }
