"""`POST /api/v1/sms/preview`: the parts and encoding a text would take, offline.

Any token (read, send or admin). Nothing is sent nor stored: the answer is what
`receiver.callr.gsm` works out by CALLR's rules. With `from`, `%STOPNUM%` counts as
the STOP number CALLR puts in its place: RECEIVER_CALLR_STOP_NUMBER, else 5 digits
(`stop_number_assumed`).

With `?quote=true` and `to`, CALLR's own count comes too (`quote`): JSON-RPC
`sms.get_quote(to, text, options)`, at the rate every call to CALLR shares, said to
be CALLR's estimate. It needs the API login (a 400 naming `quote` without it); a
CALLR that cannot answer is a 502 that says why.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from receiver.api.models import PreviewQuery, SmsPreview, SmsPreviewRequest, answer, read_body
from receiver.api.params import BadParameter, read_query
from receiver.callr.api import CallrApiError
from receiver.callr.gsm import parts_of
from receiver.http import error_response
from receiver.replay.callr import api_client


async def preview(request: Request) -> Response:
    try:
        quote = read_query(PreviewQuery, request.query_params).quote
    except BadParameter as error:
        return error_response(400, str(error), parameter=error.name)
    asked = await read_body(SmsPreviewRequest, request)
    if isinstance(asked, Response):
        return asked
    settings = request.app.state.settings
    parts = parts_of(
        asked.text, asked.encoding, sender=asked.from_, stop_number=settings.callr_stop_number
    )
    found: dict[str, object] = {
        "parts": parts.parts,
        "encoding": parts.encoding,
        "characters": parts.characters,
        "units": parts.units,
        "unit": parts.unit,
        "forced_unicode_by": list(parts.forced_unicode_by),
        "replaced": list(parts.replaced),
        "stop_number_length": parts.stop_number_length,
        "stop_number_assumed": parts.stop_number_assumed,
    }
    if quote == "true":
        if asked.to is None:
            return error_response(
                400, "quote=true needs to: the number to quote for", parameter="to"
            )
        if not settings.callr_api_configured:
            return error_response(
                400,
                "quote=true asks CALLR's sms.get_quote, which needs the API login: set"
                " RECEIVER_CALLR_API_LOGIN and RECEIVER_CALLR_API_PASSWORD",
                parameter="quote",
            )
        options = {"force_encoding": asked.encoding.upper()} if asked.encoding else None
        try:
            async with api_client(settings, request.state.pool) as api:
                quoted = await api.quote(asked.to, asked.text, options)
        except CallrApiError as error:
            return error_response(502, f"CALLR could not quote: {error}")
        found["quote"] = _quote(quoted.value)
    return answer(SmsPreview, found)


def _quote(value: dict[str, object]) -> dict[str, object]:
    """CALLR's SMS.Quote, by the names it may give its fields."""
    parts = next((value[k] for k in ("parts", "nb_sms", "count") if k in value), None)
    encoding = value.get("encoding")
    cost = value.get("cost")
    return {
        "parts": parts if isinstance(parts, int) and not isinstance(parts, bool) else None,
        "encoding": encoding.lower()
        if isinstance(encoding, str) and encoding.lower() in ("gsm", "unicode")
        else None,
        "cost": str(cost) if isinstance(cost, str | int | float) else None,
        "source": "callr",
    }
