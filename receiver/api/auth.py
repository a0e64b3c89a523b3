"""Bearer tokens for /api/v1: `RECEIVER_API_TOKENS`, compared in constant time.

The webhook credentials never open the API, nor the API tokens the webhook.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from receiver.http import error_response

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class BearerTokens:
    """The tokens that open the API; none configured means the API is closed."""

    tokens: Sequence[str]

    def allows(self, authorization: str | None) -> bool:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        candidate = presented.strip().encode("latin-1", errors="replace")
        allowed = False
        for token in self.tokens:
            allowed |= hmac.compare_digest(candidate, token.encode())
        return allowed

    def guard(self, endpoint: Endpoint) -> Endpoint:
        """`endpoint`, answering 401 unless the request carries one of the tokens."""

        async def guarded(request: Request) -> Response:
            if not self.allows(request.headers.get("authorization")):
                return error_response(
                    401,
                    "a valid API token is required (Authorization: Bearer ...)",
                    headers={"www-authenticate": "Bearer"},
                )
            return await endpoint(request)

        return guarded
