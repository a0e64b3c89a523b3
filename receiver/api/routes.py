"""Every /api/v1 route with its operations: what each takes and answers, and the token it
needs. The OpenAPI description is generated from this list (receiver.api.openapi)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from receiver.api import models as m
from receiver.api.auth import ADMIN, SEND, Tokens
from receiver.api.handlers import retry
from receiver.api.handlers import routes as handler_routes
from receiver.api.openapi import ApiRoute, Operation, describe
from receiver.api.params import Cursors
from receiver.api.preview import preview
from receiver.api.queries import Queries
from receiver.api.registrations import register
from receiver.api.sends import get_send, send, settle
from receiver.api.stats import stats
from receiver.api.status import status
from receiver.http import JSONResponse

_PAGE = "a page, newest first; `next_cursor` null on the last"
_SEND_ID = {"send_id": "the send's id (snd_...)"}


def api_routes(tokens: Tokens, *, region: str | None = None) -> list[BaseRoute]:
    """The API, and its OpenAPI description generated from the same routes.

    `region`: RECEIVER_DEFAULT_REGION, whose national numbers searches read.
    """
    # Cursors are signed with a key every process derives alike from the tokens.
    queries = Queries(Cursors(lambda: tokens.secret("receiver-cursors")), region=region)
    routes: list[BaseRoute] = [
        *handler_routes(tokens),
        ApiRoute(
            "/api/v1/forwards/{forward_id}/retry",
            tokens,
            (
                Operation(
                    "post",
                    "Send a dead (or delivered) forward again now, with a fresh set of attempts",
                    {
                        200: (m.RetriedForward, "queued"),
                        404: (m.Error, "no such forward"),
                        409: (m.Error, "pending, in flight, or without a handler"),
                    },
                    path_params={"forward_id": "forward id"},
                    scope=ADMIN,
                ),
                retry,
            ),
        ),
        ApiRoute(
            "/api/v1/messages",
            tokens,
            (
                Operation(
                    "get",
                    "Messages, newest status first",
                    {200: (m.MessagePage, _PAGE)},
                    query=m.MessagesQuery,
                ),
                queries.messages,
            ),
        ),
        ApiRoute(
            "/api/v1/messages/export",
            tokens,
            (
                Operation(
                    "get",
                    "Every message the filters choose, as a file: CSV (text/csv, a header row)"
                    " or NDJSON (application/x-ndjson, one object a line), streamed",
                    {200: (None, "the file, named in Content-Disposition")},
                    query=m.MessagesExportQuery,
                ),
                queries.export,
            ),
        ),
        ApiRoute(
            "/api/v1/messages/{sms_id:path}",
            tokens,
            (
                Operation(
                    "get",
                    "One message with its history, events and forwards",
                    {200: (m.MessageDetail, "the message"), 404: (m.Error, "no such message")},
                    path_params={"sms_id": "the SMS id, any case"},
                ),
                queries.message,
            ),
            (
                Operation(
                    "put",
                    "Register an outbound SMS (a v2 send) and its user_data, before or after"
                    " its first webhook: replies to it then route by that user_data",
                    {
                        201: (m.Registration, "registered (a new event)"),
                        200: (m.Registration, "registered already, the same: nothing changed"),
                        404: (m.Error, "not an SMS id"),
                        409: (m.Error, "the message records another user_data, to or from"),
                    },
                    body=m.RegistrationRequest,
                    path_params={"sms_id": "the SMS id CALLR gave (v2 sid, v1 hash), any case"},
                    scope=ADMIN,
                ),
                register,
            ),
        ),
        ApiRoute(
            "/api/v1/events",
            tokens,
            (
                Operation(
                    "get",
                    "Stored events, newest first",
                    {200: (m.EventPage, _PAGE)},
                    query=m.EventsQuery,
                ),
                queries.events,
            ),
        ),
        ApiRoute(
            "/api/v1/events/{event_id:path}",
            tokens,
            (
                Operation(
                    "get",
                    "One event, its raw body as received, and every distinct delivery",
                    {200: (m.EventDetail, "the event"), 404: (m.Error, "no such event")},
                    path_params={"event_id": "the event id"},
                ),
                queries.event,
            ),
        ),
        ApiRoute(
            "/api/v1/forwards",
            tokens,
            (
                Operation(
                    "get",
                    "Forwards of replies and status changes to handlers, newest first",
                    {200: (m.ForwardPage, _PAGE)},
                    query=m.ForwardsQuery,
                ),
                queries.forwards,
            ),
        ),
        ApiRoute(
            "/api/v1/stats",
            tokens,
            (
                Operation(
                    "get",
                    "Outcomes of outbound SMS created in the window (default: the last day;"
                    " at most 366 days, else 400)",
                    {200: (m.Stats, "the figures")},
                    query=m.StatsQuery,
                ),
                stats,
            ),
        ),
        ApiRoute(
            "/api/v1/status",
            tokens,
            (
                Operation(
                    "get",
                    "How far behind the message records are (the projection's backlog), the"
                    " handlers' and CALLR's health, the schema and the release",
                    {200: (m.ServiceStatus, "the status")},
                ),
                status,
            ),
        ),
        ApiRoute(
            "/api/v1/sms/preview",
            tokens,
            (
                Operation(
                    "post",
                    "The parts and encoding a text takes, by CALLR's rules (nothing is sent);"
                    " with ?quote=true, CALLR's sms.get_quote too",
                    {
                        200: (m.SmsPreview, "the preview"),
                        502: (m.Error, "CALLR could not quote"),
                    },
                    query=m.PreviewQuery,
                    body=m.SmsPreviewRequest,
                    scope=None,
                ),
                preview,
            ),
        ),
        ApiRoute(
            "/api/v1/sms",
            tokens,
            (
                Operation(
                    "post",
                    "Send an SMS through the receiver: durable at the 202, never sent twice"
                    " (a send or admin token)",
                    {
                        202: (m.Send, "durable: the sender takes it to CALLR"),
                        200: (m.Send, "the send this key already names"),
                        409: (m.Error, "the key names a send of another request"),
                        503: (m.Error, "sending is not configured"),
                    },
                    body=m.SendRequest,
                    headers=[
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                            "description": "the same key and request: the same send, no second SMS",
                        }
                    ],
                    scope=SEND,
                ),
                send,
            ),
        ),
        ApiRoute(
            "/api/v1/sms/{send_id}",
            tokens,
            (
                Operation(
                    "get",
                    "A send through the receiver: its state, CALLR's id or refusal",
                    {200: (m.Send, "the send"), 404: (m.Error, "no such send")},
                    path_params=_SEND_ID,
                    scope=None,
                ),
                get_send,
            ),
        ),
        ApiRoute(
            "/api/v1/sms/{send_id}/settle",
            tokens,
            (
                Operation(
                    "post",
                    "Say what became of an unknown send",
                    {
                        200: (m.Send, "settled"),
                        404: (m.Error, "no such send"),
                        409: (m.Error, "the send is not unknown"),
                    },
                    body=m.Settle,
                    path_params=_SEND_ID,
                    scope=ADMIN,
                ),
                settle,
            ),
        ),
    ]
    description = describe(routes)

    async def openapi(request: Request) -> Response:
        return JSONResponse(description)

    return [*routes, Route("/api/v1/openapi.json", tokens.guard(openapi), methods=["GET"])]
