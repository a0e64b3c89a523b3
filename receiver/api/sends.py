"""`POST /api/v1/sms`, `GET /api/v1/sms/{id}`, `POST /api/v1/sms/{id}/settle`.

Sending is for send and admin tokens (a send token with a prefix only with a
user_data starting with it; one with senders only from them); reading a send, for
read and admin tokens and the send token that made it or whose prefix covers it;
idempotency keys are each token's own; settling an `unknown` send, for admin
tokens. docs/sending.md says how a send goes.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from receiver.api.auth import Grant
from receiver.api.models import Send, SendRequest, Settle, answer, read_body
from receiver.callr.sends import SendState
from receiver.http import error_response
from receiver.sending.requests import (
    Conflict,
    Invalid,
    NotSettled,
    find,
    read_key,
    read_request,
    request_send,
    view,
)
from receiver.sending.requests import settle as settle_send


async def send(request: Request) -> Response:
    settings = request.app.state.settings
    api = settings.sending_api
    if api is None:
        return error_response(
            503,
            "sending is not configured: set RECEIVER_CALLR_API_LOGIN and"
            " RECEIVER_CALLR_API_PASSWORD (JSON-RPC sms.send), or RECEIVER_CALLR_API_KEY (v2)",
        )
    asked = await read_body(SendRequest, request)
    if isinstance(asked, Response):
        return asked
    grant: Grant = request.state.grant
    try:
        key = read_key(request.headers.get("idempotency-key"))
        wanted = read_request(
            asked.model_dump(by_alias=True, exclude_none=True), prefix=grant.prefix, api=api
        )
    except Invalid as error:
        return error_response(400, str(error), parameter=error.parameter)
    if grant.senders and wanted.sender not in grant.senders:
        return error_response(
            403,
            f"this token sends only from {', '.join(map(repr, grant.senders))}",
            parameter="from",
        )
    window = timedelta(hours=settings.routing_window_hours)
    try:
        async with request.state.pool.acquire() as conn:
            row, new = await request_send(
                conn,
                wanted,
                api=api,
                key=key,
                stop_number=settings.callr_stop_number,
                owner=grant.owner,
                source="POST /api/v1/sms",
                routing_window=window,
            )
    except Conflict as error:
        return error_response(409, str(error), parameter="Idempotency-Key", id=error.send_id)
    except Invalid as error:
        return error_response(400, str(error), parameter=error.parameter)
    return answer(Send, view(row), 202 if new else 200, location=f"/api/v1/sms/{row['id']}")


async def get_send(request: Request) -> Response:
    """A send, to read and admin tokens, and to the send token that made it or whose
    prefix covers its user_data; to any other, as if there were none (404)."""
    async with request.state.api_pool.acquire() as conn:
        row = await find(conn, request.path_params["send_id"])
    grant: Grant = request.state.grant
    if row is None or not grant.sees_send(row["key_owner"], row["user_data"]):
        return error_response(404, "no send has this id")
    return answer(Send, view(row))


async def settle(request: Request) -> Response:
    """An admin says what became of an `unknown` send: accepted (with CALLR's SMS id),
    rejected (never sent), or queued (certainly not sent: send it again)."""
    asked = await read_body(Settle, request)
    if isinstance(asked, Response):
        return asked
    if (asked.state == "accepted") != (asked.sms_id is not None):
        return error_response(
            400, "sms_id goes with state accepted, and only with it", parameter="sms_id"
        )
    window = timedelta(hours=request.app.state.settings.routing_window_hours)
    try:
        async with request.state.pool.acquire() as conn:
            row = await settle_send(
                conn,
                request.path_params["send_id"],
                state=SendState(asked.state),
                sms_id=asked.sms_id,
                error=asked.error,
                source="POST /api/v1/sms/{id}/settle",
                routing_window=window,
            )
    except NotSettled as error:
        return error_response(409, str(error), id=request.path_params["send_id"])
    if row is None:
        return error_response(404, "no send has this id")
    return answer(Send, view(row))
