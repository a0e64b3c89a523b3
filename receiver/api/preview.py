"""`POST /api/v1/sms/preview`: the parts and encoding a text would take, offline.

Any token (read, send or admin). Nothing is sent nor stored: the answer is what
`receiver.callr.gsm` works out by CALLR's rules.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from receiver.callr.gsm import ENCODINGS, MAX_TEXT, Encoding, parts_of
from receiver.http import JSONResponse, error_response

_FIELDS = {"text", "encoding"}


async def preview(request: Request) -> Response:
    try:
        document = orjson.loads(await request.body())
    except orjson.JSONDecodeError as error:
        return error_response(400, f"body is not valid JSON: {error}")
    problem = _problem(document)
    if problem is not None:
        return error_response(400, problem[1], parameter=problem[0])
    encoding: Encoding | None = document.get("encoding")
    parts = parts_of(document["text"], encoding)
    return JSONResponse(
        {
            "parts": parts.parts,
            "encoding": parts.encoding,
            "characters": parts.characters,
            "units": parts.units,
            "unit": parts.unit,
            "forced_unicode_by": list(parts.forced_unicode_by),
            "replaced": list(parts.replaced),
        }
    )


def _problem(document: Any) -> tuple[str | None, str] | None:
    """(the field, what is wrong with it), or None when the body is a preview request."""
    if not isinstance(document, dict):
        return None, "body must be a JSON object"
    unknown = sorted(set(document) - _FIELDS)
    if unknown:
        return unknown[0], f"unknown field(s): {', '.join(unknown)}"
    text = document.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT:
        return "text", f"text must be a string of 1 to {MAX_TEXT} characters"
    encoding = document.get("encoding")
    if encoding is not None and encoding not in ENCODINGS:
        return "encoding", f"encoding must be one of {', '.join(ENCODINGS)}"
    return None
