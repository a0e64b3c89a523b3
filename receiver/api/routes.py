"""Every /api/v1 route, each behind the API tokens (the OpenAPI description too)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.api.auth import Tokens
from receiver.api.handlers import retry
from receiver.api.handlers import routes as handler_routes
from receiver.api.openapi import DESCRIPTION
from receiver.api.params import Cursors
from receiver.api.preview import preview
from receiver.api.queries import Queries
from receiver.api.registrations import register
from receiver.api.sends import get_send, send, settle
from receiver.api.stats import stats
from receiver.api.status import status
from receiver.http import JSONResponse


async def openapi(request: Request) -> Response:
    return JSONResponse(DESCRIPTION)


def api_routes(tokens: Tokens, *, region: str | None = None) -> list[Route]:
    """The API: handlers, queries, stats and the OpenAPI description.

    `region`: RECEIVER_DEFAULT_REGION, whose national numbers searches read.
    """
    # Cursors are signed with a key every process derives alike from the tokens.
    queries = Queries(Cursors(lambda: tokens.secret("receiver-cursors")), region=region)
    guard = tokens.guard
    return [
        *handler_routes(tokens),
        Route("/api/v1/forwards/{forward_id}/retry", tokens.admin(retry), methods=["POST"]),
        Route("/api/v1/messages", guard(queries.messages), methods=["GET"]),
        Route("/api/v1/messages/{sms_id:path}", guard(queries.message), methods=["GET"]),
        Route("/api/v1/messages/{sms_id:path}", tokens.admin(register), methods=["PUT"]),
        Route("/api/v1/events", guard(queries.events), methods=["GET"]),
        Route("/api/v1/events/{event_id:path}", guard(queries.event), methods=["GET"]),
        Route("/api/v1/forwards", guard(queries.forwards), methods=["GET"]),
        Route("/api/v1/stats", guard(stats), methods=["GET"]),
        Route("/api/v1/status", guard(status), methods=["GET"]),
        Route("/api/v1/openapi.json", guard(openapi), methods=["GET"]),
        Route("/api/v1/sms/preview", tokens.any_scope(preview), methods=["POST"]),
        Route("/api/v1/sms", tokens.sender(send), methods=["POST"]),
        Route("/api/v1/sms/{send_id}", tokens.any_scope(get_send), methods=["GET"]),
        Route("/api/v1/sms/{send_id}/settle", tokens.admin(settle), methods=["POST"]),
    ]
