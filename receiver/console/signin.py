"""Signing in and out of the console: the sign-in page, throttled guessing, sign-out."""

from __future__ import annotations

import hmac
import re
import secrets
from typing import TYPE_CHECKING

import structlog
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from receiver import metrics
from receiver.api.throttle import Throttle
from receiver.api.tokens import first_run_live
from receiver.console.pages import CLOSED, SECURITY_HEADERS, next_target, read_form

if TYPE_CHECKING:
    from receiver.console.session import Session
    from receiver.console.views import Console

log = structlog.get_logger("receiver.console")


LOGIN_COOKIE = "receiver_login"
"""The sign-in form's CSRF token, beside the form (double submit)."""
_LOGIN_CSRF = re.compile(r"[A-Za-z0-9_-]{32}")


def _login_csrf(request: Request) -> str:
    """The browser's sign-in CSRF token (kept while it is well formed), or a new one."""
    kept = request.cookies.get(LOGIN_COOKIE, "")
    return kept if _LOGIN_CSRF.fullmatch(kept) else secrets.token_urlsafe(24)


def _same_site(request: Request, presented: str | None) -> bool:
    """Whether the form came with the token its cookie holds (so from this site's page)."""
    kept = request.cookies.get(LOGIN_COOKIE, "")
    return bool(
        presented
        and _LOGIN_CSRF.fullmatch(kept)
        and hmac.compare_digest(presented.encode(), kept.encode())
    )


class SignIn:
    """GET and POST /console/login, and the two ways out."""

    def __init__(self, console: Console, throttle: Throttle) -> None:
        self.console = console
        self.throttle = throttle

    async def login_page(self, request: Request) -> Response:
        if await self.console.sessions.read(request) is not None:
            return RedirectResponse(next_target(request.query_params.get("next")), 303)
        return await self._login_form(request, request.query_params.get("next", ""))

    async def _login_form(
        self,
        request: Request,
        target: str,
        status_code: int = 200,
        error: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """The sign-in page; it mentions the first-run admin token only while it works."""
        async with request.state.api_pool.acquire() as conn:
            first_run = await first_run_live(conn)
        if error is None and not await self.console.sessions.open(request):
            error = CLOSED
        csrf = _login_csrf(request)
        response = self.console.render(
            request,
            None,
            "login.html",
            status_code,
            headers=headers,
            next=target,
            error=error,
            first_run=first_run,
            login_csrf=csrf,
        )
        # The form's token, and the same in a cookie that only this site's pages send
        # (SameSite=Strict): a page elsewhere can post the form, not the cookie.
        response.set_cookie(
            LOGIN_COOKIE,
            csrf,
            max_age=3600,
            path="/console/login",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await read_form(request) or QueryParams()
        if not _same_site(request, form.get("csrf")):
            # Login CSRF: another site's page would sign this browser in with a token of
            # its choosing. Refused before any token is looked at.
            metrics.CONSOLE_SIGN_INS.labels("refused").inc()
            return await self._login_form(
                request,
                form.get("next", ""),
                403,
                error="The sign-in form had expired or came from another site: sign in again.",
            )
        address = request.client.host if request.client else "unknown"
        # Counted before the token is looked at, given back if it was right.
        async with request.state.api_pool.acquire() as conn:
            wait = await self.throttle.charge(conn, address)
        if wait is not None:
            metrics.CONSOLE_SIGN_INS.labels("throttled").inc()
            log.warning("console_sign_in_throttled", client=address, retry_after=wait)
            return await self._login_form(
                request,
                form.get("next", ""),
                429,
                error=f"Too many failed sign-ins: try again in {wait} s.",
                headers={"retry-after": str(wait)},
            )
        target = next_target(form.get("next"))
        response = RedirectResponse(target, 303, headers=SECURITY_HEADERS)
        if await self.console.sessions.sign_in(request, response, form.get("token", "")) is None:
            metrics.CONSOLE_SIGN_INS.labels("refused").inc()
            log.warning("console_sign_in_refused", client=address)
            opens = await self.console.sessions.open(request)
            return await self._login_form(
                request,
                form.get("next", ""),
                401,
                error="That token opens nothing here." if opens else CLOSED,
            )
        async with request.state.api_pool.acquire() as conn:
            await self.throttle.refund(conn, address)
        metrics.CONSOLE_SIGN_INS.labels("ok").inc()
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        response = RedirectResponse("/console/login?notice=signed-out", 303)
        await self.console.sessions.sign_out(request, response, session)
        return response

    async def logout_everywhere(self, request: Request, session: Session) -> Response:
        ended = await self.console.sessions.end_all(request)
        log.warning("console_signed_out_everywhere", sessions=ended)
        response = RedirectResponse(f"/console/login?notice=signed-out-everywhere&n={ended}", 303)
        self.console.sessions.clear_cookie(request, response)
        return response
