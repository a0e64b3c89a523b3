"""The console's session: a signed, expiring cookie naming the token that signed in.

The cookie holds a digest of the token (never the token) and the session's CSRF
token, signed with a key derived from the configured tokens: removing or changing
a token ends the sessions it opened. It is HttpOnly, SameSite=Strict, Secure when
the console is reached over HTTPS (directly or through the proxy), and expires
after `RECEIVER_CONSOLE_SESSION_HOURS`.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from receiver.api.auth import ADMIN, Scope, Tokens, fingerprint

COOKIE = "receiver_console"


@dataclass(frozen=True, slots=True)
class Session:
    """Who is signed in: what they may do, and the token their forms must carry."""

    scope: Scope
    csrf: str

    @property
    def admin(self) -> bool:
        return self.scope == ADMIN

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)


class Sessions:
    """Signs sessions in and out, and reads the session of a request."""

    def __init__(self, tokens: Tokens, *, hours: float) -> None:
        self._tokens = tokens
        self._max_age = int(hours * 3600)
        self._serializer = URLSafeTimedSerializer(
            tokens.secret("receiver-console-session"), salt="console-session"
        )

    @property
    def open(self) -> bool:
        """False when no token is configured: nobody can sign in."""
        return self._tokens.configured

    def read(self, request: Request) -> Session | None:
        """The request's valid session; None when it has none, or an expired or forged one."""
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self._max_age)
        except BadSignature:  # a bad signature, or expired
            return None
        if not (isinstance(data, dict) and isinstance(data.get("t"), str)):
            return None
        scope = self._tokens.scope_of_fingerprint(data["t"])
        csrf = data.get("c")
        if scope is None or not isinstance(csrf, str):
            return None
        return Session(scope=scope, csrf=csrf)

    def sign_in(self, request: Request, response: Response, token: str) -> Scope | None:
        """Set a session cookie for `token` on `response`; its scope, None if it opens nothing."""
        scope = self._tokens.scope_of(token)
        if scope is None:
            return None
        session = {"t": fingerprint(token.strip()), "c": secrets.token_urlsafe(24)}
        value = self._serializer.dumps(session)
        response.set_cookie(
            COOKIE,
            value,
            max_age=self._max_age,
            path="/console",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return scope

    def sign_out(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE,
            path="/console",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
