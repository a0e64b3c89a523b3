"""Who may read and who may change: `RECEIVER_API_TOKENS` and `RECEIVER_ADMIN_TOKENS`.

A read token opens the API's reads and the console's pages; an admin token opens
those and every change (handlers, sending forwards again). Tokens are compared in
constant time. The webhook credentials never open the API, nor the API tokens
the webhook.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from receiver.http import error_response

Endpoint = Callable[[Request], Awaitable[Response]]
Scope = Literal["read", "admin"]

READ: Scope = "read"
ADMIN: Scope = "admin"


def fingerprint(token: str) -> str:
    """A short digest that names a token without revealing it (kept in console sessions)."""
    return hashlib.sha256(b"receiver-token\n" + token.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Tokens:
    """The tokens that open the API and the console; none configured means both are closed."""

    readers: Sequence[str] = ()
    admins: Sequence[str] = ()

    @property
    def configured(self) -> bool:
        return bool(self.readers or self.admins)

    def scope_of(self, presented: str) -> Scope | None:
        """What `presented` may do: admin, read, or nothing (None)."""
        candidate = presented.strip().encode("latin-1", errors="replace")
        admin = read = False
        # Every token is compared, whichever matches, so the time says nothing.
        for token in self.admins:
            admin |= hmac.compare_digest(candidate, token.encode())
        for token in self.readers:
            read |= hmac.compare_digest(candidate, token.encode())
        return ADMIN if admin else READ if read else None

    def scope_of_fingerprint(self, digest: str) -> Scope | None:
        """The scope of the configured token whose `fingerprint` is `digest`."""
        admin = any(hmac.compare_digest(digest, fingerprint(t)) for t in self.admins)
        read = any(hmac.compare_digest(digest, fingerprint(t)) for t in self.readers)
        return ADMIN if admin else READ if read else None

    def secret(self, purpose: str) -> bytes:
        """A key every process derives alike from the tokens (a token change renews it)."""
        material = "\n".join([purpose, *sorted(self.readers), "", *sorted(self.admins)])
        return hashlib.sha256(material.encode()).digest()

    def bearer_scope(self, authorization: str | None) -> Scope | None:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        return self.scope_of(presented)

    def guard(self, endpoint: Endpoint, scope: Scope = READ) -> Endpoint:
        """`endpoint`, answering 401 without a token and 403 when the token may not do this."""

        async def guarded(request: Request) -> Response:
            granted = self.bearer_scope(request.headers.get("authorization"))
            if granted is None:
                return error_response(
                    401,
                    "a valid API token is required (Authorization: Bearer ...)",
                    headers={"www-authenticate": "Bearer"},
                )
            if scope == ADMIN and granted != ADMIN:
                return error_response(403, ADMIN_REQUIRED)
            return await endpoint(request)

        return guarded

    def admin(self, endpoint: Endpoint) -> Endpoint:
        return self.guard(endpoint, ADMIN)


ADMIN_REQUIRED = (
    "this token may read, not change: changes need an admin token (RECEIVER_ADMIN_TOKENS)"
)
