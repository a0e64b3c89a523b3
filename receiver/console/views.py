"""The console's pages and forms, rendered on the server from the API's own reads."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, cast
from urllib.parse import quote, urlencode

import structlog
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from receiver.api.export import Row, export_response
from receiver.api.models import Position, Query, QueryTime
from receiver.api.numbers import number_prefix
from receiver.api.params import BadParameter, read_query
from receiver.api.queries import (
    EVENT_STATES,
    FORWARD_STATES,
    STATUSES,
    Queries,
    event_detail,
    message_detail,
    message_id,
)
from receiver.api.stats import stats_of
from receiver.console import reads
from receiver.console.chart import stacked_bars
from receiver.console.handlers import HandlerForms
from receiver.console.mask import Mask
from receiver.console.pages import back_to_form, in_utc, next_page, read_pool
from receiver.console.session import Session, Sessions
from receiver.db.engine import Connection
from receiver.forwarding.handlers import (
    HandlerView,
    list_handlers,
)
from receiver.forwarding.outbox import retry_forwards_by_id
from receiver.forwarding.routing import status_handler_for
from receiver.forwarding.watch import silence, troubled_handlers
from receiver.http import whole_number
from receiver.projection.backlog import backlog
from receiver.status import TERMINAL

log = structlog.get_logger("receiver.console")

# A number search: digits, an optional leading +, the usual spacing; at most E.164's 15.
_LOOKS_LIKE_NUMBER = re.compile(r"\+?[0-9 ().-]{1,24}")
# A page's place and the page's own notices: not what chooses the messages.
_NOT_FILTERS = ("cursor", "limit", "notice", "n")
_TERMINAL = frozenset(status.value for status in TERMINAL)


def _is_number(q: str) -> bool:
    """Whether the search box's text is read as a phone number (or its start)."""
    return bool(_LOOKS_LIKE_NUMBER.fullmatch(q)) and any(c.isdigit() for c in q)


class ConflictsQuery(Query):
    """The events page's list of conflicting deliveries, a page before an id."""

    kind: Literal["conflict"]
    since: QueryTime | None = None
    until: QueryTime | None = None
    before: Position | None = None


_SEND_OF = "SELECT id, state, attempts, requested_at FROM sends WHERE sms_id = $1"
_UNKNOWN_SENDS = "SELECT count(*) FROM sends WHERE state = 'unknown'"


class Console(HandlerForms):
    """Every page and form of `/console`."""

    def __init__(
        self,
        sessions: Sessions,
        queries: Queries,
        mask: Mask,
        traffic: reads.TrafficCounts,
    ) -> None:
        super().__init__(sessions, mask)
        self.queries = queries
        self.traffic = traffic

    # -- pages ------------------------------------------------------------------------------

    async def overview(self, request: Request, session: Session) -> Response:
        asked = request.query_params.get("window", "hour")
        window = reads.WINDOWS.get(asked, reads.WINDOWS["hour"])
        now = datetime.now(UTC)
        async with read_pool(request).acquire() as conn:
            traffic = await self.traffic.read(conn, window, now)
            figures = await stats_of(
                conn, now - window.span, now, "network", overall=True, traffic=False
            )
            conflicts = await reads.conflict_count(conn, now - window.span)
            forwards = await reads.forward_counts(conn)
            waiting = await reads.waiting_for_handlers(conn)
            unknown_sends = await conn.fetchval(_UNKNOWN_SENDS)
            behind = await backlog(conn)
            troubled = await troubled_handlers(conn)
            quiet = await silence(conn, request.app.state.settings.webhooks_silent_after, now)
        chart = stacked_bars(
            f"Webhooks a minute by result, the last {window.name}",
            traffic.buckets,
            traffic.per_minute,
        )
        return self.render(
            request,
            session,
            "overview.html",
            window=window,
            chart=chart,
            traffic=traffic,
            figures=figures,
            conflicts=conflicts,
            forwards=forwards,
            waiting=waiting,
            unknown_sends=unknown_sends,
            troubled=troubled,
            quiet=quiet,
            # The lists' window starts where the overview's does (their filter reads
            # the status time, in UTC as the form writes it).
            since=f"{now - window.span:%Y-%m-%dT%H:%M:%S}",
            backlog=behind,
            lag=behind.lag_seconds(now),
            refresh=True,
        )

    async def messages(self, request: Request, session: Session) -> Response:
        query = in_utc(request.query_params)
        q = (query.get("q") or "").strip()
        params = [(k, v) for k, v in query.multi_items() if k != "q" and v.strip()]
        searched, searched_as = "", None
        if q:
            if _is_number(q):
                params.append(("number", q))
                searched = "number"
                searched_as = self._number_hint(q)
            else:
                async with read_pool(request).acquire() as conn:
                    found = await message_id(conn, q)
                if found is not None:
                    return RedirectResponse(f"/console/messages/{quote(found)}", 303)
                params.append(("user_data", q))
                searched = "user_data"
        async with read_pool(request).acquire() as conn:
            page = await self.queries.messages_page(conn, QueryParams(params))
        return self.render(
            request,
            session,
            "messages.html",
            page=page,
            q=q,
            searched=searched,
            number_hint=searched_as,
            filters=dict(query),
            statuses=STATUSES,
            next_url=next_page(query, page["next_cursor"]),
            export_url="/console/messages/export?"
            + urlencode([(k, v) for k, v in query.multi_items() if k not in _NOT_FILTERS]),
        )

    async def export(self, request: Request, session: Session) -> Response:
        """The search shown on the Messages page, every page of it, as CSV, masked as
        the page masks (receiver.api.export)."""
        query = in_utc(request.query_params)
        params = [
            (k, v) for k, v in query.multi_items() if k not in ("q", *_NOT_FILTERS) and v.strip()
        ]
        q = (query.get("q") or "").strip()
        if q:
            params.append(("number" if _is_number(q) else "user_data", q))
        form, selection = self.queries.messages_export(QueryParams([*params, ("format", "csv")]))
        return export_response(request, read_pool(request), selection, form, shown=self._masked)

    def _masked(self, row: Row) -> Row:
        mask = self.mask
        for name in ("from", "to", "user_data"):
            row[name] = mask.number(cast(str | None, row[name]))
        row["text"] = mask.message_text(cast(str | None, row["text"]))
        return row

    def _number_hint(self, q: str) -> str | None:
        """What to tell of a number searched without its +: how it was read."""
        if q.startswith("+"):
            return None
        region = self.queries.region
        start = number_prefix(q, region)[0]
        searched_as = self.mask.number(start)
        if region and start != number_prefix(q)[0]:  # read by the region's rules
            return f"Read as a number of {region}: {searched_as}."
        extra = (
            ""
            if region
            else " To search by national numbers (06 12 …), set RECEIVER_DEFAULT_REGION"
            " (FR, GB, US…)."
        )
        return (
            f"Searched as {searched_as}: numbers are kept in E.164 (+ and the country code).{extra}"
        )

    async def message(self, request: Request, session: Session) -> Response:
        async with read_pool(request).acquire() as conn:
            found = await message_detail(conn, request.path_params["sms_id"])
            if found is None:
                return self.render(
                    request,
                    session,
                    "error.html",
                    404,
                    message=f"No SMS has the id {request.path_params['sms_id']!r}.",
                )
            events = [await event_detail(conn, str(e["event_id"])) for e in found["events"]]
            replies = await reads.replies_to(conn, found["id"])
            forward_ids = [f["id"] for f in found["forwards"] if isinstance(f["id"], int)]
            attempts = await reads.attempts_of(conn, forward_ids)
            handlers = {h.id: h for h in await list_handlers(conn, query_values=session.admin)}
            sent = await conn.fetchrow(_SEND_OF, found["id"])
            late_handler = await _late_status_handler(conn, found, handlers)
        return self.render(
            request,
            session,
            "message.html",
            m=found,
            sent=sent,
            events=[e for e in events if e is not None],
            replies=replies,
            attempts=attempts,
            handlers=handlers,
            late_handler=late_handler,
            unchanging=_unchanging_events(found),
            back=request.url.path,
        )

    async def events(self, request: Request, session: Session) -> Response:
        query = in_utc(request.query_params)
        kind = query.get("kind", "invalid")
        if kind == "conflict":
            q = read_query(ConflictsQuery, query)
            async with read_pool(request).acquire() as conn:
                rows = await reads.conflicts(conn, q.since, q.until, q.before, 101)
            next_url = None
            if len(rows) > 100:
                rest = [(k, v) for k, v in query.multi_items() if k != "before"]
                next_url = "?" + urlencode([*rest, ("before", str(rows[99]["id"]))])
            return self.render(
                request,
                session,
                "events.html",
                kind=kind,
                conflicts=rows[:100],
                page=None,
                filters=dict(query),
                next_url=next_url,
                states=EVENT_STATES,
            )
        if kind not in ("invalid", "unhandled"):
            raise BadParameter("kind", "kind must be invalid, unhandled or conflict")
        params = [(k, v) for k, v in query.multi_items() if k != "kind" and v.strip()]
        async with read_pool(request).acquire() as conn:
            page = await self.queries.events_page(
                conn, QueryParams([*params, ("state", kind), ("limit", "100")])
            )
        return self.render(
            request,
            session,
            "events.html",
            kind=kind,
            conflicts=None,
            page=page,
            filters=dict(query),
            next_url=next_page(query, page["next_cursor"]),
            states=EVENT_STATES,
        )

    async def event(self, request: Request, session: Session) -> Response:
        async with read_pool(request).acquire() as conn:
            found = await event_detail(conn, request.path_params["event_id"])
        if found is None:
            return self.render(request, session, "error.html", 404, message="No such event.")
        return self.render(request, session, "event.html", event=found)

    async def forwards(self, request: Request, session: Session) -> Response:
        query = request.query_params
        params = [(k, v) for k, v in query.multi_items() if v.strip()]
        async with read_pool(request).acquire() as conn:
            page = await self.queries.forwards_page(conn, QueryParams(params))
            handlers = {h.id: h for h in await list_handlers(conn, query_values=session.admin)}
            counts = await reads.forward_counts(conn)
        return self.render(
            request,
            session,
            "forwards.html",
            page=page,
            handlers=handlers,
            counts=counts,
            filters=dict(query),
            states=FORWARD_STATES,
            next_url=next_page(query, page["next_cursor"]),
            back=str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
        )

    async def retry(self, request: Request, session: Session) -> Response:
        form: QueryParams = request.state.form
        ids = [i for i in (whole_number(v) for v in form.getlist("forward")) if i is not None]
        async with request.state.pool.acquire() as conn:
            found, queued = await retry_forwards_by_id(conn, ids[:1000])
        refused = found - queued
        notice = ("not-retried", refused) if refused and not queued else ("retried", queued)
        return back_to_form(form, notice)


async def _late_status_handler(
    conn: Connection, message: Mapping[str, Any], handlers: Mapping[int, HandlerView]
) -> HandlerView | None:
    """For an MT with no status callback: the handler its status news would go to now
    (the projector's own choice), when it was added after the SMS's last change
    (callbacks go out for changes after a handler is added, never for the ones before)."""
    if message["direction"] != "outbound" or message["forwards"]:
        return None
    handler_id = await status_handler_for(
        conn, message["user_data"], terminal=message["status"] in _TERMINAL
    )
    handler = handlers.get(handler_id) if handler_id is not None else None
    if handler is None or handler.created_at <= message["status_at"]:
        return None
    return handler


def _unchanging_events(message: Mapping[str, Any]) -> set[str]:
    """The processed events of a message that changed nothing on its record: no step of
    its history is theirs, and none is the first, which made the record."""
    stepped = {step["event_id"] for step in message["history"]}
    processed = [e for e in message["events"] if e["state"] == "processed"]
    return {str(e["event_id"]) for e in processed[1:] if e["event_id"] not in stepped}
