"""`PUT /api/v1/messages/{sms_id}`: register an outbound SMS and its `user_data`.

CALLR's v2 API carries no `user_data`, so the replies to a v2 send could not be
routed by it. The sender registers the send here, before or after its first
webhook; the registration is an event (receiver.callr.own), applied like one, and
replies to the SMS then route by its `user_data` (rule `recent_mt`).

A registration that says something else than what the message already records
(another `user_data`, `to` or `from`) is refused with 409: the record keeps one
value per field, whatever the order its events came in.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from receiver.api.models import Registration, RegistrationRequest, answer, read_body
from receiver.callr.own import registration_body, registration_event
from receiver.callr.sms import MAX_NUMBER, MAX_USER_DATA, RANGE_TEXT, OutOfRange, in_range
from receiver.http import error_response
from receiver.projection.apply import store_and_apply

_SMS_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_FIELDS = {"user_data", "to", "from", "created_at"}
_RECORDED = """
SELECT user_data, to_number, from_number, direction FROM messages WHERE sms_id = $1 FOR UPDATE
"""


class _Invalid(ValueError):
    pass


async def register(request: Request) -> Response:
    sms_id = request.path_params["sms_id"]
    if not _SMS_ID.fullmatch(sms_id):
        return error_response(404, "an SMS id is 1 to 64 letters and digits")
    asked = await read_body(RegistrationRequest, request)
    if isinstance(asked, Response):
        return asked
    try:
        user_data, to, sender, created_at = _fields(
            asked.model_dump(by_alias=True, exclude_unset=True)
        )
    except _Invalid as error:
        return error_response(400, str(error))
    body = registration_body(sms_id, user_data, to, sender, created_at)
    envelope = registration_event(body)
    window = timedelta(hours=request.app.state.settings.routing_window_hours)
    async with request.state.pool.acquire() as conn, conn.transaction():
        recorded = await conn.fetchrow(_RECORDED, sms_id.lower())
        conflict = _conflict(recorded, user_data, to, sender)
        if conflict is not None:
            return error_response(409, conflict, sms_id=sms_id.lower())
        new = await store_and_apply(
            conn, [(envelope, body)], source="PUT /api/v1/messages/{id}", routing_window=window
        )
    return answer(
        Registration,
        {"sms_id": sms_id.lower(), "event_id": envelope.event_id, "registered": bool(new)},
        201 if new else 200,
    )


def _fields(document: Any) -> tuple[str, str, str | None, datetime]:
    if not isinstance(document, dict):
        raise _Invalid("body must be a JSON object")
    unknown = sorted(set(document) - _FIELDS)
    if unknown:
        raise _Invalid(f"unknown field(s): {', '.join(unknown)}")
    user_data = _text(document, "user_data", required=True, limit=MAX_USER_DATA)
    to = _text(document, "to", required=True, limit=MAX_NUMBER)
    sender = _text(document, "from", required=False, limit=MAX_NUMBER)
    assert user_data is not None
    assert to is not None
    return user_data, to, sender, _created_at(document.get("created_at"))


def _created_at(raw: Any) -> datetime:
    if raw is None:
        return datetime.now(UTC)
    try:
        created_at = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        created_at = None
    if created_at is None or created_at.tzinfo is None:
        raise _Invalid("created_at must be an RFC 3339 time with its zone")
    try:
        return in_range(created_at)
    except OutOfRange:
        raise _Invalid(f"created_at is {RANGE_TEXT}") from None


def _text(document: dict[str, object], name: str, *, required: bool, limit: int) -> str | None:
    value = document.get(name)
    if value is None or value == "":
        if required:
            raise _Invalid(f"{name} is required")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _Invalid(f"{name} must be a string of at most {limit} characters")
    if "\x00" in value:
        raise _Invalid(f"{name} must not contain a NUL character")
    return value


def _conflict(recorded: Any, user_data: str, to: str, sender: str | None) -> str | None:
    if recorded is None:
        return None
    if recorded["direction"] != "outbound":
        return "this SMS is an inbound one: only outbound SMS are registered"
    for name, column, value in (
        ("user_data", "user_data", user_data),
        ("to", "to_number", to),
        ("from", "from_number", sender),
    ):
        if value is not None and recorded[column] is not None and recorded[column] != value:
            return f"the message already records {name} {recorded[column]!r}, not {value!r}"
    return None
