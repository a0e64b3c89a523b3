"""The console's Tokens page (admins): the tokens kept in the database, made and revoked.

A token made here is shown once, on the page that answers the form, and never
again: only its digest is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from receiver.api.auth import SCOPES
from receiver.api.tokens import TokenError, add_token, list_tokens, revoke_token

if TYPE_CHECKING:
    from receiver.console.session import Session
    from receiver.console.views import Console


class TokenPages:
    """GET /console/tokens, and its two forms: add, revoke."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def page(
        self,
        request: Request,
        session: Session,
        status_code: int = 200,
        error: str | None = None,
        made: tuple[str, str] | None = None,
    ) -> Response:
        if not session.admin:
            return self.console.render(
                request,
                session,
                "error.html",
                403,
                message="Tokens are managed by admin sessions.",
            )
        async with request.state.api_pool.acquire() as conn:
            kept = await list_tokens(conn, revoked=True)
        return self.console.render(
            request,
            session,
            "tokens.html",
            status_code,
            tokens=kept,
            scopes=SCOPES,
            error=error,
            made=made,
            # Only whether the environment holds tokens: never the settings themselves.
            environment_tokens=bool(
                request.app.state.settings.api_tokens
                or request.app.state.settings.admin_tokens
                or request.app.state.settings.send_tokens
            ),
        )

    async def add(self, request: Request, session: Session) -> Response:
        form = request.state.form
        name, scope = form.get("name", "").strip(), form.get("scope", "")
        try:
            async with request.state.api_pool.acquire() as conn:
                token = await add_token(conn, name, scope)
        except TokenError as error:
            return await self.page(request, session, 400, str(error))
        return await self.page(request, session, 201, made=(name, token))

    async def revoke(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        async with request.state.api_pool.acquire() as conn:
            revoked = await revoke_token(conn, name)
        notice = "token-revoked" if revoked else "token-not-revoked"
        return RedirectResponse(f"/console/tokens?notice={notice}", 303)
