"""JSON answers and the error handlers that keep every answer JSON, with no stack trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("receiver.http")


class JSONResponse(Response):
    """A JSON response rendered by orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def whole_number(text: str | None) -> int | None:
    """`text` as a number when it is only ASCII digits; None otherwise.

    Not `str.isdigit` alone: it is true of "¹" and "٣", which `int` refuses or reads
    as other digits (schemathesis found the 500 this made).
    """
    if text is None or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def error_response(
    status_code: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """`{"error": message, ...}` with the given status."""
    return JSONResponse({"error": message, **extra}, status_code=status_code, headers=headers)


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 answers, as JSON."""
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, headers=exc.headers)


def loggable_path(path: str) -> str:
    """`path` as logs may carry it: the webhook's URL token (a credential) replaced."""
    if path.startswith(_WEBHOOK_PREFIX):
        return _WEBHOOK_PREFIX + "***"
    return path


_WEBHOOK_PREFIX = "/webhooks/callr/"


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug: logged with its trace, answered 500 with none."""
    log.error("unhandled_error", path=loggable_path(request.url.path), exc_info=exc)
    return error_response(500, "internal error")


async def bad_parameter(request: Request, exc: Exception) -> Response:
    """A query parameter the API cannot use: 400 naming it."""
    name = getattr(exc, "name", None)
    return error_response(400, str(exc), parameter=name)


async def query_cancelled(request: Request, exc: Exception) -> Response:
    """A dashboard query that ran past the statement timeout: 503, nothing to retry at once."""
    log.warning("query_timeout", path=loggable_path(request.url.path))
    return error_response(503, "the query took too long; narrow it (a shorter window, a filter)")


async def database_unavailable(request: Request, exc: Exception) -> Response:
    """The database cannot be reached: 503 with Retry-After."""
    log.warning("database_unavailable", path=loggable_path(request.url.path), error=repr(exc))
    return error_response(
        503, "the database is unavailable; retry later", headers={"retry-after": "5"}
    )


# What every answer of the API and /metrics carries: never kept by a cache (they hold
# phone numbers and texts), never read as anything but their content type.
PRIVATE_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]


class PrivateAnswers:
    """Pure ASGI middleware: the API's and /metrics' answers, errors included, get
    `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...] = ("/api/", "/metrics")) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return

        async def private(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in (b"cache-control", b"x-content-type-options")
                ]
                message = {**message, "headers": headers + PRIVATE_HEADERS}
            await send(message)

        await self.app(scope, receive, private)


MAX_REQUEST_BODY = 1 << 20
"""The most an API or console request body may hold (the webhook has its own limit)."""


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Pure ASGI middleware: a request body past `limit` bytes is answered 413 (JSON), said
    by its Content-Length before anything is read, or as soon as the bytes read pass it:
    never held whole in memory."""

    def __init__(self, app: ASGIApp, limit: int = MAX_REQUEST_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next(
            (
                whole_number(v.decode("latin-1"))
                for k, v in scope["headers"]
                if k == b"content-length"
            ),
            None,
        )
        if declared is not None and declared > self.limit:
            await self._too_large(scope, receive, send)
            return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except _BodyTooLarge:
            if started:
                raise
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            f"the request body is larger than {self.limit} bytes",
            headers={"connection": "close"},
        )
        await response(scope, receive, send)


class DotSegments:
    """Pure ASGI middleware: a path with a `.` or `..` segment (decoded, so `%2e%2e` too) is
    answered 400 and goes no further. A proxy that matches its allow rules on the
    normalised path and passes the raw one on would otherwise let
    `/api/v1/messages/x/../../../../webhooks/callr` reach the API from anywhere."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_dot_segment(scope["path"]):
            response = error_response(400, "a path with . or .. segments is not served")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_dot_segment(path: str) -> bool:
    return "/." in path and any(part in (".", "..") for part in path.split("/"))
