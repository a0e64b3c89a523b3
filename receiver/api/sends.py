"""`POST /api/v1/sms`, `GET /api/v1/sms/{id}`, `POST /api/v1/sms/{id}/settle`.

Sending is for send and admin tokens (a send token of `TOKEN=PREFIX` only with a
user_data starting with PREFIX); reading a send, for any token; settling an
`unknown` send, for admin tokens. docs/sending.md says how a send goes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from receiver.callr.sends import SendState
from receiver.http import JSONResponse, error_response
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

_SMS_ID = 64
_SETTLE_FIELDS = {"state", "sms_id", "error"}


async def send(request: Request) -> Response:
    settings = request.app.state.settings
    api = settings.sending_api
    if api is None:
        return error_response(
            503,
            "sending is not configured: set RECEIVER_CALLR_API_LOGIN and"
            " RECEIVER_CALLR_API_PASSWORD (JSON-RPC sms.send), or RECEIVER_CALLR_API_KEY (v2)",
        )
    try:
        document = orjson.loads(await request.body())
    except orjson.JSONDecodeError as error:
        return error_response(400, f"body is not valid JSON: {error}")
    try:
        key = read_key(request.headers.get("idempotency-key"))
        wanted = read_request(document, prefix=getattr(request.state, "send_prefix", None))
    except Invalid as error:
        return error_response(400, str(error), parameter=error.parameter)
    window = timedelta(hours=settings.routing_window_hours)
    try:
        async with request.state.pool.acquire() as conn:
            row, new = await request_send(
                conn, wanted, api=api, key=key, source="POST /api/v1/sms", routing_window=window
            )
    except Conflict as error:
        return error_response(409, str(error), parameter="Idempotency-Key", id=error.send_id)
    except Invalid as error:
        return error_response(400, str(error), parameter=error.parameter)
    return JSONResponse(
        view(row),
        status_code=202 if new else 200,
        headers={"location": f"/api/v1/sms/{row['id']}"},
    )


async def get_send(request: Request) -> Response:
    async with request.state.api_pool.acquire() as conn:
        row = await find(conn, request.path_params["send_id"])
    if row is None:
        return error_response(404, "no send has this id")
    return JSONResponse(view(row))


async def settle(request: Request) -> Response:
    """An admin says what became of an `unknown` send: accepted (with CALLR's SMS id),
    rejected (never sent), or queued (certainly not sent: send it again)."""
    try:
        document = orjson.loads(await request.body())
    except orjson.JSONDecodeError as error:
        return error_response(400, f"body is not valid JSON: {error}")
    problem = _settle_problem(document)
    if problem is not None:
        return error_response(400, problem[1], parameter=problem[0])
    window = timedelta(hours=request.app.state.settings.routing_window_hours)
    try:
        async with request.state.pool.acquire() as conn:
            row = await settle_send(
                conn,
                request.path_params["send_id"],
                state=SendState(document["state"]),
                sms_id=document.get("sms_id"),
                error=document.get("error"),
                source="POST /api/v1/sms/{id}/settle",
                routing_window=window,
            )
    except NotSettled as error:
        return error_response(409, str(error), id=request.path_params["send_id"])
    if row is None:
        return error_response(404, "no send has this id")
    return JSONResponse(view(row))


def _settle_problem(document: Any) -> tuple[str | None, str] | None:
    if not isinstance(document, dict):
        return None, "body must be a JSON object"
    unknown = sorted(set(document) - _SETTLE_FIELDS)
    if unknown:
        return unknown[0], f"unknown field(s): {', '.join(unknown)}"
    state = document.get("state")
    if state not in ("accepted", "rejected", "queued"):
        return "state", "state must be accepted (with sms_id), rejected or queued (send again)"
    sms_id = document.get("sms_id")
    if state == "accepted":
        if not isinstance(sms_id, str) or not sms_id.isalnum() or len(sms_id) > _SMS_ID:
            return "sms_id", "an accepted send needs CALLR's SMS id (letters and digits)"
    elif sms_id is not None:
        return "sms_id", "sms_id goes with state accepted only"
    error = document.get("error")
    if error is not None and (not isinstance(error, str) or len(error) > 1000):
        return "error", "error must be a string of at most 1000 characters"
    return None
