"""The console's handlers page and its forms: add, change (the policy too), enable,
disable, remove, each through the same functions as the API and the CLI."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from receiver.api.handlers import new_handler
from receiver.console import reads
from receiver.console.pages import Pages
from receiver.console.session import Session
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
from receiver.http import whole_number

log = structlog.get_logger("receiver.console")


class HandlerForms(Pages):
    """The handlers page and its forms."""

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
        document: dict[str, object] = {"url": form.get("url", "").strip()}
        if form.get("name", "").strip():
            document["name"] = form["name"].strip()
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
        document["events"] = events = form.getlist("events") or ["replies"]
        if "status" in events:
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
        changes: dict[str, object] = {}
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


_EDITABLE: dict[str, Callable[[str], object]] = {
    "name": str,
    "url": str,
    "timeout": float,
    "final_statuses": tuple,
    "max_in_flight": int,
    "rate": float,
    "attempts": int,
    "first_retry": float,
    "notify_url": str,
}
