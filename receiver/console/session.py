"""The console's sessions: kept by the server, named by a signed cookie.

A session is a row of `console_sessions`: a digest of the token that signed in
(never the token), the session's CSRF token, when it expires and when it ended.
The cookie holds the session's id, signed with a key derived from the configured
tokens; the table holds a digest of that id. So:
- signing out ends the session at once, in every process: a cookie copied before
  opens nothing after;
- an admin's "sign out everywhere" ends every session;
- removing or changing a token ends the sessions it opened (its digest no longer
  names a configured token, and the cookie's key changes);
- a session expires after `RECEIVER_CONSOLE_SESSION_HOURS` whatever the cookie says.
The cookie is HttpOnly, SameSite=Strict, and Secure when the console is reached
over HTTPS (directly or through the proxy).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from receiver.api.auth import ADMIN, SEND, Scope, Tokens, digest

COOKIE = "receiver_console"

_OPEN = """
WITH gone AS (
    DELETE FROM console_sessions WHERE expires_at < now() - interval '1 day'
)
INSERT INTO console_sessions (id, token, csrf, address, expires_at)
VALUES ($1, $2, $3, $4, now() + $5::interval)
"""
_READ = """
SELECT token, csrf FROM console_sessions
WHERE id = $1 AND ended_at IS NULL AND expires_at > now()
"""
_END = "UPDATE console_sessions SET ended_at = now() WHERE id = $1 AND ended_at IS NULL"
_END_ALL = """
UPDATE console_sessions SET ended_at = now() WHERE ended_at IS NULL AND expires_at > now()
"""


@dataclass(frozen=True, slots=True)
class Session:
    """Who is signed in: what they may do, and the token their forms must carry."""

    scope: Scope
    csrf: str
    key: str
    """The digest of the session's id: its row."""

    @property
    def admin(self) -> bool:
        return self.scope == ADMIN

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """Signs sessions in and out, and reads the session of a request."""

    def __init__(self, tokens: Tokens, *, hours: float) -> None:
        self._tokens = tokens
        self._max_age = int(hours * 3600)

    @property
    def _serializer(self) -> URLSafeTimedSerializer:
        # The deployment's key is read at start, after the routes are made.
        return URLSafeTimedSerializer(
            self._tokens.secret("receiver-console-session"), salt="console-session"
        )

    async def open(self, request: Request) -> bool:
        """False when no token is configured anywhere: nobody can sign in."""
        return await self._tokens.configured(_pool(request))

    async def read(self, request: Request) -> Session | None:
        """The request's live session; None when it has none, or an ended, expired or forged one."""
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self._max_age)
        except BadSignature:  # a bad signature, or expired
            return None
        if not (isinstance(data, dict) and isinstance(data.get("s"), str)):
            return None
        key = _key(data["s"])
        async with _pool(request).acquire() as conn:
            row = await conn.fetchrow(_READ, key)
        if row is None:
            return None
        scope = await self._tokens.scope_of_digest(_pool(request), row["token"])
        if scope is None or scope == SEND:
            return None
        return Session(scope=scope, csrf=row["csrf"], key=key)

    async def sign_in(self, request: Request, response: Response, token: str) -> Scope | None:
        """Open a session for `token` and set its cookie on `response`; its scope, None if the
        token opens nothing."""
        scope = await self._tokens.scope_of(_pool(request), token)
        if scope is None or scope == SEND:
            return None
        session_id = secrets.token_urlsafe(32)
        address = request.client.host if request.client else None
        async with _pool(request).acquire() as conn:
            await conn.execute(
                _OPEN,
                _key(session_id),
                digest(token),
                secrets.token_urlsafe(24),
                address,
                timedelta(seconds=self._max_age),
            )
        response.set_cookie(
            COOKIE,
            self._serializer.dumps({"s": session_id}),
            max_age=self._max_age,
            path="/console",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return scope

    async def sign_out(self, request: Request, response: Response, session: Session) -> None:
        """End `session` (in every process) and clear its cookie."""
        async with _pool(request).acquire() as conn:
            await conn.execute(_END, session.key)
        self.clear_cookie(request, response)

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE,
            path="/console",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    async def end_all(self, request: Request) -> int:
        """End every live session, in every process; how many there were."""
        async with _pool(request).acquire() as conn:
            status = await conn.execute(_END_ALL)
        return int(status.split()[-1])


def _pool(request: Request) -> Any:
    return request.state.api_pool
