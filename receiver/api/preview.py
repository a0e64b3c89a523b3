"""`POST /api/v1/sms/preview`: the parts and encoding a text would take, offline.

Any token (read, send or admin). Nothing is sent nor stored: the answer is what
`receiver.callr.gsm` works out by CALLR's rules.
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
    parts = parts_of(asked.text, asked.encoding)
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
        },
    )
