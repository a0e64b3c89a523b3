"""The console's pages and forms, rendered on the server from the API's own reads."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
import structlog
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from receiver.api.handlers import new_handler
from receiver.api.models import Position, Query, QueryTime
from receiver.api.params import BadParameter, read_query
from receiver.api.queries import (
    EVENT_STATES,
    FORWARD_STATES,
    STATUSES,
    Queries,
    event_detail,
    message_detail,
    message_id,
    number_prefix,
)
from receiver.api.stats import stats_of
from receiver.console import reads
from receiver.console.chart import COLOURS, stacked_bars
from receiver.console.mask import Mask
from receiver.console.session import Session, Sessions
from receiver.forwarding.handlers import (
    HandlerError,
    HandlerExists,
    add_handler,
    find_handler,
    list_handlers,
    remove_handler,
    set_enabled,
    update_handler,
)
from receiver.forwarding.outbox import retry_forwards_by_id
from receiver.forwarding.watch import silence, troubled_handlers
from receiver.http import whole_number
from receiver.projection.backlog import backlog

Page = Callable[[Request, Session], Awaitable[Response]]
log = structlog.get_logger("receiver.console")

_TEMPLATES = Path(__file__).parent / "templates"
# A number search: digits, an optional leading +, the usual spacing; at most E.164's 15.
_LOOKS_LIKE_NUMBER = re.compile(r"\+?[0-9 ().-]{1,24}")
_FORM_MAX_BYTES = 64 * 1024


# The send through the receiver that made an SMS, if one did.
class ConflictsQuery(Query):
    """The events page's list of conflicting deliveries, a page before an id."""

    kind: Literal["conflict"]
    since: QueryTime | None = None
    until: QueryTime | None = None
    before: Position | None = None


_SEND_OF = "SELECT id, state, attempts, requested_at FROM sends WHERE sms_id = $1"
_UNKNOWN_SENDS = "SELECT count(*) FROM sends WHERE state = 'unknown'"
_NOTICES = {
    "retried": "{n} forward(s) queued to be sent again.",
    "not-retried": "{n} forward(s) could not be sent again (pending, in flight, or no handler).",
    "added": "Handler added.",
    "updated": "Handler updated: its forwards follow the change.",
    "removed": "Handler removed; its undelivered forwards are routed again.",
    "enabled": "Handler enabled.",
    "disabled": "Handler disabled.",
    "signed-out": "Signed out.",
    "signed-out-everywhere": "Signed out everywhere: {n} session(s) ended.",
    "token-revoked": "Token revoked: it opens nothing within seconds.",
    "token-not-revoked": "No live token of that name.",
    "send-settled": "Send settled.",
}
CLOSED = (
    "The console is closed: no RECEIVER_API_TOKENS or RECEIVER_ADMIN_TOKENS is configured,"
    " and no token was made with `receiver tokens add`."
)
# Every console answer: never cached, never framed, scripts and styles from here only.
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


class Console:
    """Every page and form of `/console`."""

    def __init__(
        self,
        sessions: Sessions,
        queries: Queries,
        mask: Mask,
        traffic: reads.TrafficCounts,
    ) -> None:
        self.sessions = sessions
        self.queries = queries
        self.mask = mask
        self.traffic = traffic
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["number"] = mask.number
        env.filters["sms_text"] = mask.message_text
        env.filters["excerpt"] = mask.excerpt
        env.filters["raw_body"] = mask.body
        env.filters["when"] = _when
        env.filters["ago"] = _ago
        env.filters["seconds"] = _seconds
        env.filters["percent"] = _percent
        env.globals["colours"] = COLOURS
        self.templates = Jinja2Templates(env=env)

    # -- plumbing ---------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        session: Session | None,
        name: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> Response:
        notice = _NOTICES.get(request.query_params.get("notice", ""), "")
        context = {
            "session": session,
            "notice": notice.format(n=whole_number(request.query_params.get("n")) or 0),
            "masked": self.mask.numbers or self.mask.text,
            **context,
        }
        return self.templates.TemplateResponse(
            request,
            name,
            context,
            status_code=status_code,
            headers={**SECURITY_HEADERS, **(headers or {})},
        )

    def page(self, view: Page) -> Callable[[Request], Awaitable[Response]]:
        """A GET page: the sign-in page for a request with no valid session."""

        async def guarded(request: Request) -> Response:
            session = await self.sessions.read(request)
            if session is None:
                return _to_login(request)
            try:
                return await view(request, session)
            except BadParameter as error:
                return self.render(
                    request, session, "error.html", status_code=400, message=str(error)
                )

        return guarded

    def action(self, view: Page, *, admin: bool = True) -> Callable[[Request], Awaitable[Response]]:
        """A form post: a session, its CSRF token, and (for changes) an admin token."""

        async def guarded(request: Request) -> Response:
            session = await self.sessions.read(request)
            if session is None:
                return _to_login(request)
            form = await read_form(request)
            if form is None:
                return self.render(
                    request, session, "error.html", 413, message="The form is too large."
                )
            if not session.csrf_matches(form.get("csrf")):
                return self.render(
                    request,
                    session,
                    "error.html",
                    403,
                    message="This form is not from this console session (its CSRF token is"
                    " missing or old). Reload the page and try again.",
                )
            if admin and not session.admin:
                return self.render(
                    request,
                    session,
                    "error.html",
                    403,
                    message="Signed in with a read token: changes need an admin token"
                    " (RECEIVER_ADMIN_TOKENS).",
                )
            request.state.form = form
            return await view(request, session)

        return guarded

    # -- pages ------------------------------------------------------------------------------

    async def overview(self, request: Request, session: Session) -> Response:
        asked = request.query_params.get("window", "hour")
        window = reads.WINDOWS.get(asked, reads.WINDOWS["hour"])
        now = datetime.now(UTC)
        async with request.state.api_pool.acquire() as conn:
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
        query = _in_utc(request.query_params)
        q = (query.get("q") or "").strip()
        params = [(k, v) for k, v in query.multi_items() if k != "q" and v.strip()]
        searched, searched_as = "", None
        if q:
            if _LOOKS_LIKE_NUMBER.fullmatch(q) and any(c.isdigit() for c in q):
                params.append(("number", q))
                searched = "number"
                searched_as = self._number_hint(q)
            else:
                async with request.state.api_pool.acquire() as conn:
                    found = await message_id(conn, q)
                if found is not None:
                    return RedirectResponse(f"/console/messages/{quote(found)}", 303)
                params.append(("user_data", q))
                searched = "user_data"
        async with request.state.api_pool.acquire() as conn:
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
            next_url=_next_page(query, page["next_cursor"]),
        )

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
        async with request.state.api_pool.acquire() as conn:
            found = await message_detail(conn, request.path_params["sms_id"])
            if found is None:
                return self.render(
                    request,
                    session,
                    "error.html",
                    404,
                    message=f"No SMS has the id {request.path_params['sms_id']!r}.",
                )
            events = [await event_detail(conn, e["event_id"]) for e in found["events"]]
            replies = await reads.replies_to(conn, found["id"])
            forward_ids = [f["id"] for f in found["forwards"]]
            attempts = await reads.attempts_of(conn, forward_ids)
            handlers = {h.id: h for h in await list_handlers(conn, query_values=session.admin)}
            sent = await conn.fetchrow(_SEND_OF, found["id"])
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
            back=request.url.path,
        )

    async def events(self, request: Request, session: Session) -> Response:
        query = _in_utc(request.query_params)
        kind = query.get("kind", "invalid")
        if kind == "conflict":
            q = read_query(ConflictsQuery, query)
            async with request.state.api_pool.acquire() as conn:
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
        async with request.state.api_pool.acquire() as conn:
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
            next_url=_next_page(query, page["next_cursor"]),
            states=EVENT_STATES,
        )

    async def event(self, request: Request, session: Session) -> Response:
        async with request.state.api_pool.acquire() as conn:
            found = await event_detail(conn, request.path_params["event_id"])
        if found is None:
            return self.render(request, session, "error.html", 404, message="No such event.")
        return self.render(request, session, "event.html", event=found)

    async def forwards(self, request: Request, session: Session) -> Response:
        query = request.query_params
        params = [(k, v) for k, v in query.multi_items() if v.strip()]
        async with request.state.api_pool.acquire() as conn:
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
            next_url=_next_page(query, page["next_cursor"]),
            back=str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
        )

    async def retry(self, request: Request, session: Session) -> Response:
        form: QueryParams = request.state.form
        ids = [i for i in (whole_number(v) for v in form.getlist("forward")) if i is not None]
        async with request.state.pool.acquire() as conn:
            found, queued = await retry_forwards_by_id(conn, ids[:1000])
        refused = found - queued
        notice = ("not-retried", refused) if refused and not queued else ("retried", queued)
        return _back(form, notice)

    async def handlers(
        self,
        request: Request,
        session: Session,
        status_code: int = 200,
        error: str | None = None,
        form: dict[str, str] | None = None,
    ) -> Response:
        """The handlers page; after a refused addition, with the error and what was typed."""
        async with request.state.api_pool.acquire() as conn:
            listed = await list_handlers(conn, query_values=session.admin)
            health = await reads.handler_health(conn)
        return self.render(
            request,
            session,
            "handlers.html",
            status_code,
            handlers=listed,
            health=health,
            error=error,
            # Prefilled from a link ("add a handler for this user_data" on the overview).
            form=form
            or {
                name: request.query_params[name]
                for name in ("user_data", "default")
                if request.query_params.get(name)
            },
        )

    async def add_handler(self, request: Request, session: Session) -> Response:
        form: QueryParams = request.state.form
        document: dict[str, Any] = {"url": form.get("url", "").strip()}
        if form.get("default"):
            document["default"] = True
        else:
            document["user_data"] = form.get("user_data", "")
        if form.get("secret"):
            document["secret"] = form["secret"]
        timeout = form.get("timeout", "").strip()
        if timeout:
            try:
                document["timeout"] = float(timeout)
            except ValueError:
                document["timeout"] = timeout  # refused below, with the API's message
        document["events"] = form.getlist("events") or ["replies"]
        if "status" in document["events"]:
            document["status_filter"] = form.get("status_filter") or "all"
        try:
            new = new_handler(document)
            async with request.state.pool.acquire() as conn:
                await add_handler(conn, new, request.app.state.destinations)
        except HandlerError as error:
            status_code = 409 if isinstance(error, HandlerExists) else 400
            return await self.handlers(request, session, status_code, str(error), dict(form))
        return RedirectResponse("/console/handlers?notice=added", 303)

    async def change_handler(self, request: Request, session: Session) -> Response:
        raw = request.path_params["handler_id"]
        handler_id = whole_number(raw) if len(raw) < 19 else None
        change = request.path_params["change"]
        if change == "update" and handler_id is not None:
            return await self._update_handler(request, session, handler_id)
        done = False
        if handler_id is not None:
            async with request.state.pool.acquire() as conn:
                if change == "remove":
                    done = await remove_handler(conn, handler_id)
                elif change in ("enable", "disable"):
                    changed = await set_enabled(conn, handler_id, enabled=change == "enable")
                    done = changed is not None
        if not done:
            return self.render(request, session, "error.html", 404, message="No such handler.")
        notice = {"remove": "removed", "enable": "enabled", "disable": "disabled"}[change]
        return RedirectResponse(f"/console/handlers?notice={notice}", 303)

    async def _update_handler(
        self, request: Request, session: Session, handler_id: int
    ) -> Response:
        """The handler's edit form: each field as typed, an empty one the default."""
        form: QueryParams = request.state.form
        changes: dict[str, Any] = {}
        try:
            for name, kind in _EDITABLE.items():
                if name not in form:
                    continue
                text = form[name].strip()
                if not text and name in ("url", "timeout"):
                    continue  # kept as it is: these have no default to go back to
                if kind is str:
                    changes[name] = text or None
                elif not text:
                    changes[name] = None
                elif kind is tuple:
                    changes[name] = tuple(int(p) for p in text.replace(" ", "").split(",") if p)
                else:
                    changes[name] = kind(text)
        except ValueError:
            return await self.handlers(
                request, session, 400, f"{name}: {form[name]!r} is not a valid value"
            )
        try:
            async with request.state.pool.acquire() as conn:
                current = await find_handler(conn, handler_id)
                # The form shows URLs with their credentials masked: one sent back as
                # shown is unchanged, never replaced by its mask.
                for name in ("url", "notify_url"):
                    shown = getattr(current, name) if current is not None else None
                    if name in changes and current is not None and changes[name] == shown:
                        del changes[name]
                handler = await update_handler(
                    conn, handler_id, changes, request.app.state.destinations
                )
        except HandlerError as error:
            return await self.handlers(request, session, 400, str(error))
        if handler is None:
            return self.render(request, session, "error.html", 404, message="No such handler.")
        return RedirectResponse(f"/console/handlers?notice=updated#handler-{handler_id}", 303)


# The fields of the console's edit form, and how each is read (empty: the default).
_EDITABLE: dict[str, Any] = {
    "url": str,
    "timeout": float,
    "final_statuses": tuple,
    "max_in_flight": int,
    "rate": float,
    "attempts": int,
    "first_retry": float,
    "notify_url": str,
}


async def read_form(request: Request) -> QueryParams | None:
    """The urlencoded form of a post; None when it is larger than a form can be."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_MAX_BYTES:
            return None
    return QueryParams(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def next_target(target: str | None) -> str:
    """Where to go after signing in: a console page of this host, never elsewhere."""
    if (
        target
        and target.startswith("/console")
        and not target.startswith("/console/login")
        and "\\" not in target
        and "//" not in target
    ):
        return target
    return "/console"


def _to_login(request: Request) -> Response:
    target = request.url.path + ("?" + request.url.query if request.url.query else "")
    if request.method != "GET":
        target = "/console"
    return RedirectResponse(
        "/console/login?" + urlencode({"next": target}), 303, headers=SECURITY_HEADERS
    )


def _back(form: QueryParams, notice: tuple[str, int]) -> Response:
    target = next_target(form.get("back"))
    separator = "&" if "?" in target else "?"
    code, n = notice
    return RedirectResponse(f"{target}{separator}notice={code}&n={n}", 303)


def _next_page(query: QueryParams, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    kept = [(k, v) for k, v in query.multi_items() if k not in ("cursor", "notice", "n")]
    return "?" + urlencode([*kept, ("cursor", cursor)])


def _in_utc(query: QueryParams) -> QueryParams:
    """`since` and `until` as the console's time fields send them (no zone) taken as UTC."""
    items = []
    for key, value in query.multi_items():
        if key in ("since", "until") and value and "T" in value:
            _, _, clock = value.partition("T")
            if not ("+" in clock or "-" in clock or clock.endswith("Z")):
                value += "+00:00"
        items.append((key, value))
    return QueryParams(items)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    seconds = (datetime.now(UTC) - value).total_seconds()
    return _seconds(seconds) + " ago"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return str(timedelta(seconds=round(value)))


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"
