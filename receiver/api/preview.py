"""`POST /api/v1/sms/preview`: the parts and encoding a text would take, offline.

Any token (read, send or admin). Nothing is sent nor stored: the answer is what
`receiver.callr.gsm` works out by CALLR's rules. With `from`, `%STOPNUM%` counts as
the STOP number CALLR puts in its place: RECEIVER_CALLR_STOP_NUMBER, else 5 digits
(`stop_number_assumed`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from receiver.api.models import SmsPreview, SmsPreviewRequest, answer, read_body
from receiver.callr.gsm import parts_of


async def preview(request: Request) -> Response:
    asked = await read_body(SmsPreviewRequest, request)
    if isinstance(asked, Response):
        return asked
    parts = parts_of(
        asked.text,
        asked.encoding,
        sender=asked.from_,
        stop_number=request.app.state.settings.callr_stop_number,
    )
    return answer(
        SmsPreview,
        {
            "parts": parts.parts,
            "encoding": parts.encoding,
            "characters": parts.characters,
            "units": parts.units,
            "unit": parts.unit,
            "forced_unicode_by": list(parts.forced_unicode_by),
            "replaced": list(parts.replaced),
            "stop_number_length": parts.stop_number_length,
            "stop_number_assumed": parts.stop_number_assumed,
        },
    )
