"""`/api/v1/handlers`: the handler registry over HTTP (the same operations as the CLI)."""

from __future__ import annotations

from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response

from receiver.api import models as m
from receiver.api.auth import ADMIN, Endpoint, Tokens
from receiver.api.models import (
    Handler,
    HandlerChanges,
    HandlerList,
    NewHandlerAnswer,
    RetriedForward,
    RotatedSecret,
    RotateQuery,
    answer,
    read_body,
)
from receiver.api.models import NewHandler as NewHandlerBody
from receiver.api.openapi import ApiRoute, Operation
from receiver.api.params import BadParameter, read_query
from receiver.forwarding.handlers import (
    CHANGEABLE,
    POLICY,
    HandlerError,
    HandlerExists,
    NewHandler,
    add_handler,
    handler_fields,
    list_handlers,
    remove_handler,
    rotate_secret,
    set_enabled,
    update_handler,
)
from receiver.forwarding.outbox import retry_forwards_by_id
from receiver.http import error_response, whole_number


async def list_all(request: Request) -> Response:
    """Every handler; to a read token, their URLs' query values hidden (`***`)."""
    admin = request.state.grant is not None and request.state.grant.scope == ADMIN
    async with request.state.pool.acquire() as conn:
        handlers = await list_handlers(conn, query_values=admin)
    return answer(HandlerList, {"items": [h.to_json() for h in handlers]})


async def create(request: Request) -> Response:
    asked = await read_body(NewHandlerBody, request)
    if isinstance(asked, Response):
        return asked
    try:
        new = new_handler(asked.model_dump(exclude_unset=True))
        async with request.state.pool.acquire() as conn:
            handler, routed = await add_handler(conn, new, request.app.state.destinations)
    except HandlerError as error:
        return error_response(409 if isinstance(error, HandlerExists) else 400, str(error))
    return answer(NewHandlerAnswer, {**handler.to_json(), "routed_forwards": routed}, 201)


async def delete(request: Request) -> Response:
    handler_id = _handler_id(request)
    if handler_id is None:
        return error_response(404, "no such handler")
    async with request.state.pool.acquire() as conn:
        removed = await remove_handler(conn, handler_id)
    return Response(status_code=204) if removed else error_response(404, "no such handler")


def _toggle(enabled: bool) -> Endpoint:
    async def toggle(request: Request) -> Response:
        handler_id = _handler_id(request)
        handler = None
        if handler_id is not None:
            async with request.state.pool.acquire() as conn:
                handler = await set_enabled(conn, handler_id, enabled=enabled)
        if handler is None:
            return error_response(404, "no such handler")
        return answer(Handler, handler.to_json())

    return toggle


def _handler_id(request: Request) -> int | None:
    raw: str = request.path_params["handler_id"]
    return whole_number(raw) if len(raw) < 19 else None


def new_handler(document: object) -> NewHandler:
    if not isinstance(document, dict):
        raise HandlerError("body must be a JSON object")
    known = {"user_data", "default", *CHANGEABLE}
    unknown = sorted(set(document) - known)
    if unknown:
        raise HandlerError(f"unknown field(s): {', '.join(unknown)}")
    user_data, default = document.get("user_data"), document.get("default", False)
    url, secret, timeout = document.get("url"), document.get("secret"), document.get("timeout", 10)
    if user_data is not None and not isinstance(user_data, str):
        raise HandlerError("user_data must be a string")
    if not isinstance(default, bool):
        raise HandlerError("default must be true or false")
    if not isinstance(url, str):
        raise HandlerError("url is required, as a string")
    if secret is not None and not isinstance(secret, str):
        raise HandlerError("secret must be a string")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool):
        raise HandlerError("timeout must be a number of seconds")
    events, status_filter = document.get("events", ["replies"]), document.get("status_filter")
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise HandlerError("events must be a list of strings")
    if status_filter is not None and not isinstance(status_filter, str):
        raise HandlerError("status_filter must be a string")
    return replace(
        NewHandler(
            user_data=user_data,
            default=default,
            url=url,
            secret=secret,
            timeout=float(timeout),
            events=tuple(events),
            status_filter=status_filter,
        ),
        **handler_fields({name: document[name] for name in POLICY if name in document}),
    )


async def patch(request: Request) -> Response:
    """Change a handler in place: its id, user_data and forwards kept."""
    handler_id = _handler_id(request)
    if handler_id is None:
        return error_response(404, "no such handler")
    asked = await read_body(HandlerChanges, request)
    if isinstance(asked, Response):
        return asked
    try:
        changes = handler_fields(asked.model_dump(exclude_unset=True))
        if not changes:
            return error_response(400, f"nothing to change: give one of {', '.join(CHANGEABLE)}")
        async with request.state.pool.acquire() as conn:
            handler = await update_handler(
                conn, handler_id, changes, request.app.state.destinations
            )
    except HandlerError as error:
        return error_response(409 if isinstance(error, HandlerExists) else 400, str(error))
    if handler is None:
        return error_response(404, "no such handler")
    return answer(Handler, handler.to_json())


async def rotate(request: Request) -> Response:
    """A new secret, the old one signing beside it for `?overlap=` seconds (a day)."""
    handler_id = _handler_id(request)
    if handler_id is None:
        return error_response(404, "no such handler")
    try:
        overlap = read_query(RotateQuery, request.query_params).overlap
    except BadParameter as error:
        return error_response(400, str(error), parameter=error.name)
    async with request.state.pool.acquire() as conn:
        rotated = await rotate_secret(conn, handler_id, overlap)
    if rotated is None:
        return error_response(404, "no such handler")
    handler, secret = rotated
    return answer(RotatedSecret, {"handler": handler.to_json(), "secret": secret})


async def retry(request: Request) -> Response:
    """Send one forward again now, with a fresh set of attempts (dead or done ones)."""
    raw: str = request.path_params["forward_id"]
    forward_id = whole_number(raw) if len(raw) < 19 else None
    if forward_id is None:
        return error_response(404, "no such forward")
    async with request.state.pool.acquire() as conn:
        found, queued = await retry_forwards_by_id(conn, [forward_id])
    if not found:
        return error_response(404, "no such forward")
    if not queued:
        return error_response(
            409, "only a dead or delivered forward with a handler can be sent again"
        )
    return answer(RetriedForward, {"id": forward_id, "state": "pending"})


_HANDLER_ID = {"handler_id": "handler id"}
_NO_HANDLER = (m.Error, "no such handler")


def routes(tokens: Tokens) -> list[ApiRoute]:
    """The handler routes: listing for any token, changes for admin tokens."""
    return [
        # One route for both methods: a 405 on it then allows both.
        ApiRoute(
            "/api/v1/handlers",
            tokens,
            (
                Operation("get", "The registered handlers", {200: (m.HandlerList, "the handlers")}),
                list_all,
            ),
            (
                Operation(
                    "post",
                    "Register a handler (waiting forwards are routed to it)",
                    {
                        201: (m.NewHandlerAnswer, "registered"),
                        409: (
                            m.Error,
                            "a handler for this user_data (or the default), or of this name,"
                            " exists",
                        ),
                    },
                    body=m.NewHandler,
                    scope=ADMIN,
                ),
                create,
            ),
        ),
        ApiRoute(
            "/api/v1/handlers/{handler_id}",
            tokens,
            (
                Operation(
                    "delete",
                    "Remove a handler (its undelivered forwards are routed again)",
                    {204: (None, "removed"), 404: _NO_HANDLER},
                    path_params=_HANDLER_ID,
                    scope=ADMIN,
                ),
                delete,
            ),
            (
                Operation(
                    "patch",
                    "Change a handler in place (its id, user_data and forwards kept): its name,"
                    " URL, secret, events, timeout and policy",
                    {
                        200: (m.Handler, "the handler as it is now"),
                        404: _NO_HANDLER,
                        409: (m.Error, "another handler has that name"),
                    },
                    path_params=_HANDLER_ID,
                    body=m.HandlerChanges,
                    scope=ADMIN,
                ),
                patch,
            ),
        ),
        *(
            ApiRoute(
                f"/api/v1/handlers/{{handler_id}}/{action}",
                tokens,
                (
                    Operation(
                        "post",
                        f"{action.capitalize()} a handler",
                        {200: (m.Handler, "the handler"), 404: _NO_HANDLER},
                        path_params=_HANDLER_ID,
                        scope=ADMIN,
                    ),
                    _toggle(action == "enable"),
                ),
            )
            for action in ("disable", "enable")
        ),
        ApiRoute(
            "/api/v1/handlers/{handler_id}/rotate-secret",
            tokens,
            (
                Operation(
                    "post",
                    "A new signing secret; the old one signs beside it for ?overlap= seconds"
                    " (a day)",
                    {200: (m.RotatedSecret, "the new secret, shown once"), 404: _NO_HANDLER},
                    path_params=_HANDLER_ID,
                    query=m.RotateQuery,
                    scope=ADMIN,
                ),
                rotate,
            ),
        ),
    ]
