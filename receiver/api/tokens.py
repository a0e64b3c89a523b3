"""Tokens kept in the database: made (shown once), listed, revoked.

Shared by `receiver tokens` and the console's Tokens page. A new token is random
(`rcv_` and 32 bytes, URL-safe) and only its digest is kept; the token itself is
shown once, to whoever made it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from receiver.api.auth import SCOPES, Scope, digest
from receiver.callr.sms import MAX_USER_DATA
from receiver.db.engine import Connection
from receiver.sending.requests import sender_ok, sender_rules

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")

_ADD = """
INSERT INTO api_tokens (name, scope, digest, user_data_prefix, senders)
VALUES ($1, $2, $3, $4, $5)
"""
_LIST = """
SELECT name, scope, created_at, last_used_at, revoked_at, user_data_prefix,
    COALESCE(senders, '{}') AS senders
FROM api_tokens
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
    user_data_prefix: str | None = None
    senders: list[str] = field(default_factory=list)


def new_token() -> str:
    return "rcv_" + secrets.token_urlsafe(32)


async def add_token(
    conn: Connection,
    name: str,
    scope: str,
    token: str | None = None,
    *,
    user_data_prefix: str | None = None,
    senders: Sequence[str] = (),
) -> str:
    """Keep a new token named `name` with `scope`; the token, to be shown once.

    `token`: keep this one (the first-run admin token) instead of making one. A send
    token may be held to a `user_data_prefix` (it sends with no other user_data, and
    reads the sends it covers) and to `senders` (the only `from` it may use).
    """
    if not _NAME.fullmatch(name):
        raise TokenError(
            "name must be 1 to 64 letters, digits, '-', '_', '.' or '@', starting with a"
            " letter or digit"
        )
    if scope not in SCOPES:
        raise TokenError(f"scope must be one of {', '.join(SCOPES)}")
    if (user_data_prefix is not None or senders) and scope != "send":
        raise TokenError("a user_data prefix and senders are for send tokens only")
    if user_data_prefix is not None:
        check_prefix(user_data_prefix)
    for sender in senders:
        if not sender_ok(sender):
            raise TokenError(f"sender {sender!r} is not one CALLR takes: {sender_rules(None)}")
    token = token or new_token()
    try:
        await conn.execute(
            _ADD, name, scope, digest(token), user_data_prefix, list(senders) or None
        )
    except asyncpg.UniqueViolationError:
        raise TokenError(f"a token named {name!r} exists already: revoke it first") from None
    return token


async def list_tokens(conn: Connection, *, revoked: bool = False) -> list[KeptToken]:
    """The live tokens (and the revoked ones too, when asked), oldest first."""
    return [KeptToken(**dict(row)) for row in await conn.fetch(_LIST, revoked)]


async def revoke_token(conn: Connection, name: str) -> bool:
    """Revoke the live token named `name`; False when there is none."""
    status = await conn.execute(_REVOKE, name)
    return bool(int(status.split()[-1]))


def check_prefix(prefix: str) -> None:
    """A prefix that covers only its own team's user_data: it must end in a delimiter, since
    `teamA` would also cover `teamAB`'s; raises `TokenError` saying so."""
    if not 1 <= len(prefix) <= MAX_USER_DATA or "\x00" in prefix:
        raise TokenError(f"a user_data prefix is 1 to {MAX_USER_DATA} characters, without NUL")
    if prefix[-1].isalnum():
        raise TokenError(
            f"a user_data prefix must end in a delimiter ({prefix!r} would also cover"
            f" {prefix + 'B'!r}): {prefix + '-'!r}, say"
        )


def scope_of(value: str) -> Scope:
    """`value` as a scope; raises `TokenError` naming the scopes."""
    for scope in SCOPES:
        if value == scope:
            return scope
    raise TokenError(f"scope must be one of {', '.join(SCOPES)}")


async def first_run_live(conn: Connection) -> bool:
    """Whether the first-run admin token still opens the console."""
    return bool(await conn.fetchval(_FIRST_RUN_LIVE, FIRST_RUN))
