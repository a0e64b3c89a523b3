"""Tokens kept in the database: made (shown once), listed, revoked.

Shared by `receiver tokens` and the console's Tokens page. A new token is random
(`rcv_` and 32 bytes, URL-safe) and only its digest is kept; the token itself is
shown once, to whoever made it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from receiver.api.auth import SCOPES, Scope, digest

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")

_ADD = """
INSERT INTO api_tokens (name, scope, digest) VALUES ($1, $2, $3)
RETURNING name, scope, created_at, last_used_at, revoked_at
"""
_LIST = """
SELECT name, scope, created_at, last_used_at, revoked_at FROM api_tokens
WHERE $1 OR revoked_at IS NULL
ORDER BY revoked_at IS NOT NULL, created_at, name
"""
_REVOKE = "UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL"


FIRST_RUN = "first-run-admin"
"""The admin token a first start on the embedded database makes (kept in the data folder)."""
_FIRST_RUN_LIVE = "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = $1 AND revoked_at IS NULL)"


class TokenError(ValueError):
    """A token that cannot be made or revoked as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class KeptToken:
    """A token as people see it: never the token itself."""

    name: str
    scope: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def new_token() -> str:
    return "rcv_" + secrets.token_urlsafe(32)


async def add_token(conn: Any, name: str, scope: str, token: str | None = None) -> str:
    """Keep a new token named `name` with `scope`; the token, to be shown once.

    `token`: keep this one (the first-run admin token) instead of making one.
    """
    if not _NAME.fullmatch(name):
        raise TokenError(
            "name must be 1 to 64 letters, digits, '-', '_', '.' or '@', starting with a"
            " letter or digit"
        )
    if scope not in SCOPES:
        raise TokenError(f"scope must be one of {', '.join(SCOPES)}")
    token = token or new_token()
    try:
        await conn.execute(_ADD, name, scope, digest(token))
    except asyncpg.UniqueViolationError:
        raise TokenError(f"a token named {name!r} exists already: revoke it first") from None
    return token


async def list_tokens(conn: Any, *, revoked: bool = False) -> list[KeptToken]:
    """The live tokens (and the revoked ones too, when asked), oldest first."""
    return [KeptToken(**dict(row)) for row in await conn.fetch(_LIST, revoked)]


async def revoke_token(conn: Any, name: str) -> bool:
    """Revoke the live token named `name`; False when there is none."""
    status = await conn.execute(_REVOKE, name)
    return bool(int(status.split()[-1]))


def scope_of(value: str) -> Scope:
    """`value` as a scope; raises `TokenError` naming the scopes."""
    for scope in SCOPES:
        if value == scope:
            return scope
    raise TokenError(f"scope must be one of {', '.join(SCOPES)}")


async def first_run_live(conn: Any) -> bool:
    """Whether the first-run admin token still opens the console."""
    return bool(await conn.fetchval(_FIRST_RUN_LIVE, FIRST_RUN))
