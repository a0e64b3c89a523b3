"""The console's Sends pages: the SMS sent through the receiver, and settling unknown ones.

Support follows a send from `queued` to CALLR's answer; on-call sees those left
`unknown` (the overview counts them) and an admin settles each from its page.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from receiver.callr.sends import SendState
from receiver.sending.requests import WITH_BILLED, Invalid, NotSettled, find, settle, view

if TYPE_CHECKING:
    from receiver.console.session import Session
    from receiver.console.views import Console

STATES = tuple(state.value for state in SendState)
_LIST = (
    WITH_BILLED
    + """WHERE ($1::text IS NULL OR s.state = $1)
ORDER BY s.requested_at DESC, s.id DESC LIMIT 100"""
)
_COUNTS = "SELECT state, count(*) AS n FROM sends GROUP BY state"


class SendPages:
    """GET /console/sends, GET /console/sends/{id}, POST /console/sends/{id}/settle."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def list(self, request: Request, session: Session) -> Response:
        state = request.query_params.get("state") or None
        if state is not None and state not in STATES:
            return self.console.render(
                request, session, "error.html", 400, message=f"state must be one of {STATES}"
            )
        async with request.state.api_pool.acquire() as conn:
            rows = await conn.fetch(_LIST, state)
            counts = {r["state"]: r["n"] for r in await conn.fetch(_COUNTS)}
        return self.console.render(
            request,
            session,
            "sends.html",
            sends=[{**view(row), "row": row} for row in rows],
            state=state,
            states=STATES,
            counts=counts,
            sending_api=request.app.state.settings.sending_api,
        )

    async def page(
        self, request: Request, session: Session, status_code: int = 200, error: str | None = None
    ) -> Response:
        async with request.state.api_pool.acquire() as conn:
            row = await find(conn, request.path_params["send_id"])
        if row is None:
            return self.console.render(
                request,
                session,
                "error.html",
                404,
                message=f"No send has the id {request.path_params['send_id']!r}.",
            )
        return self.console.render(
            request, session, "send.html", status_code, s=view(row), row=row, error=error
        )

    async def settle(self, request: Request, session: Session) -> Response:
        form = request.state.form
        send_id = request.path_params["send_id"]
        state = form.get("state", "")
        if state not in ("accepted", "rejected", "queued"):
            return await self.page(request, session, 400, "Choose what became of the send.")
        window = timedelta(hours=request.app.state.settings.routing_window_hours)
        try:
            async with request.state.pool.acquire() as conn:
                row = await settle(
                    conn,
                    send_id,
                    state=SendState(state),
                    sms_id=form.get("sms_id", "").strip() or None,
                    error=form.get("error", "").strip() or None,
                    source="console",
                    routing_window=window,
                )
        except Invalid as error:
            return await self.page(request, session, 400, str(error))
        except NotSettled as error:
            return await self.page(request, session, 409, str(error))
        if row is None:
            return await self.page(request, session)
        return RedirectResponse(f"/console/sends/{send_id}?notice=send-settled", 303)
