"""What every console page and form goes through: the templates and their filters,
the session it needs, its CSRF token and scope for a change, the security headers,
the form read within its bound."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
import structlog
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from receiver.api.params import BadParameter
from receiver.console.chart import COLOURS
from receiver.console.mask import Mask
from receiver.console.session import Session, Sessions
from receiver.db.engine import Pool
from receiver.db.replica import Reads
from receiver.http import whole_number

Page = Callable[[Request, Session], Awaitable[Response]]
log = structlog.get_logger("receiver.console")

_TEMPLATES = Path(__file__).parent / "templates"
_FORM_MAX_BYTES = 64 * 1024


# The send through the receiver that made an SMS, if one did.


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


class Pages:
    """The plumbing of `/console`: rendering, and the guards of pages and forms."""

    def __init__(
        self,
        sessions: Sessions,
        mask: Mask,
    ) -> None:
        self.sessions = sessions
        self.mask = mask
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


def back_to_form(form: QueryParams, notice: tuple[str, int]) -> Response:
    target = next_target(form.get("back"))
    separator = "&" if "?" in target else "?"
    code, n = notice
    return RedirectResponse(f"{target}{separator}notice={code}&n={n}", 303)


def read_pool(request: Request) -> Reads | Pool:
    """Where a page reads: the replica while it is in time (receiver.db.replica), but the
    primary for the page a form returns to (`?notice=`), which must show its change."""
    if "notice" in request.query_params:
        pool: Pool = request.state.api_pool
        return pool
    reads: Reads = request.state.reads
    return reads


def next_page(query: QueryParams, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    kept = [(k, v) for k, v in query.multi_items() if k not in ("cursor", "notice", "n")]
    return "?" + urlencode([*kept, ("cursor", cursor)])


def in_utc(query: QueryParams) -> QueryParams:
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
