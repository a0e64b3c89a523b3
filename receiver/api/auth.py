"""Who may read and who may change: tokens of the environment, and tokens kept in the database.

A read token opens the API's reads and the console's pages; an admin token opens
those and every change (handlers, sending forwards again, tokens); a send token is
for sending SMS through the receiver, and opens no read and no console page. Tokens come from
`RECEIVER_API_TOKENS` and `RECEIVER_ADMIN_TOKENS`, and from the `api_tokens` table
(`receiver tokens add`, the console's Tokens page), where each is kept as a digest.
What the table says is cached for `CACHE_SECONDS` in each process: a revoked token
opens nothing within that long, everywhere. The webhook credentials never open the
API, nor the API tokens the webhook.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from receiver.api.throttle import Throttle
from receiver.db.engine import UNAVAILABLE_OR_UNMIGRATED, Connection, Pool
from receiver.http import error_response

Endpoint = Callable[[Request], Awaitable[Response]]
Scope = Literal["read", "send", "admin"]

READ: Scope = "read"
SEND: Scope = "send"
"""Sending SMS through the receiver, and nothing else (no read, no console page)."""
ADMIN: Scope = "admin"
SCOPES: tuple[Scope, ...] = (READ, SEND, ADMIN)

CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000

# The token of that digest, if it is live; its last use written at most once a minute.
_LOOK_UP = """
WITH t AS (
    SELECT id, scope, user_data_prefix, senders, last_used_at FROM api_tokens
    WHERE digest = $1 AND revoked_at IS NULL
),
used AS (
    UPDATE api_tokens a SET last_used_at = now() FROM t
    WHERE a.id = t.id AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
)
SELECT scope, user_data_prefix, senders FROM t
"""


class KeyNotLoaded(Exception):
    """The deployment's key is not read yet (the database away, or not migrated)."""


class Throttled(Exception):
    """The client's address tried too many wrong tokens: it waits `wait` seconds."""

    def __init__(self, wait: int) -> None:
        super().__init__(f"wait {wait} s")
        self.wait = wait


@dataclass(frozen=True, slots=True)
class Grant:
    """What one token may do, and whose it is."""

    scope: Scope
    owner: str
    """Named from the token (`owner_of`): the idempotency keys it uses and the sends it
    made are its own."""
    prefix: str | None = None
    """A send token's: every user_data it sends with starts with it (None: any)."""
    senders: tuple[str, ...] = ()
    """A send token's: the only senders (`from`) it may send from (empty: any)."""

    def sees_send(self, owner: str | None, user_data: str | None) -> bool:
        """Whether this token may read a send made by `owner` with `user_data`: read and
        admin tokens every send; a send token those it made, and those its prefix covers."""
        if self.scope != SEND:
            return True
        if owner is not None and hmac.compare_digest(owner, self.owner):
            return True
        return self.prefix is not None and (user_data or "").startswith(self.prefix)


_ANY_LIVE = "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE revoked_at IS NULL)"
# The deployment's random key: made by the first process that starts, read by all.
_KEEP_KEY = "INSERT INTO deployment_keys (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING"
_READ_KEY = "SELECT key FROM deployment_keys WHERE id = 1"


async def any_kept(conn: Connection) -> bool:
    """Whether the database keeps a live token (`receiver tokens add`)."""
    return bool(await conn.fetchval(_ANY_LIVE))


def owner_of(token_digest: str) -> str:
    """Whose a token's sends and idempotency keys are: named from its digest, and naming
    nothing that opens anything (it is kept in sends and their events)."""
    return hashlib.sha256(b"receiver-owner\n" + token_digest.encode()).hexdigest()[:32]


def digest(token: str) -> str:
    """What names a token without revealing it: kept in `api_tokens` and console sessions."""
    return hashlib.sha256(b"receiver-token\n" + token.strip().encode()).hexdigest()


@dataclass
class Tokens:
    """The tokens that open the API and the console; with none anywhere, both are closed."""

    readers: Sequence[str] = ()
    admins: Sequence[str] = ()
    senders: Sequence[str] = ()
    """RECEIVER_SEND_TOKENS: `TOKEN`, or `TOKEN=PREFIX` for one that may only send with a
    user_data starting with PREFIX."""
    throttle: Throttle = field(default_factory=Throttle)
    """Guesses of tokens, counted per client address (receiver.api.throttle)."""
    _env: dict[str, Scope] = field(init=False, repr=False)
    _prefixes: dict[str, str] = field(init=False, repr=False)
    _cache: dict[str, tuple[Grant | None, float]] = field(init=False, repr=False)
    _key: bytes | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._prefixes = {}
        senders: dict[str, Scope] = {}
        for entry in self.senders:
            token, _, prefix = entry.partition("=")
            senders[digest(token)] = SEND
            if prefix.strip():
                self._prefixes[digest(token)] = prefix.strip()
        self._env = (
            senders
            | {digest(t): READ for t in self.readers}
            | {digest(t): ADMIN for t in self.admins}
        )
        self._cache = {}

    def overlapping_prefixes(self) -> list[str]:
        """The environment's send prefixes that end in a letter or digit: `teamA` also
        covers `teamAB` (said at start; a prefix such as `teamA-` does not)."""
        return sorted({p for p in self._prefixes.values() if p[-1:].isalnum()})

    async def configured(self, pool: Pool) -> bool:
        """Whether any token could open something: one in the environment, or a live one kept."""
        if self._env:
            return True
        async with pool.acquire() as conn:
            return await any_kept(conn)

    async def scope_of(self, pool: Pool, presented: str) -> Scope | None:
        """What `presented` may do: admin, read, or nothing (None)."""
        if not presented.strip():
            return None
        return await self.scope_of_digest(pool, digest(presented))

    async def scope_of_digest(self, pool: Pool, token_digest: str) -> Scope | None:
        """The scope of the live token whose `digest` is `token_digest`."""
        grant = await self.grant_of_digest(pool, token_digest)
        return grant.scope if grant is not None else None

    async def grant_of_digest(self, pool: Pool, token_digest: str) -> Grant | None:
        """What the live token whose `digest` is `token_digest` may do; None: nothing."""
        # Every environment token is compared, whichever matches, so the time says nothing.
        found: Scope | None = None
        for known, scope in self._env.items():
            if hmac.compare_digest(known, token_digest) and found != ADMIN:
                found = scope
        if found is not None:
            return Grant(found, owner_of(token_digest), self._prefixes.get(token_digest))
        cached = self._cache.get(token_digest)
        now = time.monotonic()
        if cached is not None and now - cached[1] < CACHE_SECONDS:
            return cached[0]
        async with pool.acquire() as conn:
            kept = await conn.fetchrow(_LOOK_UP, token_digest)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        granted: Grant | None = None
        if kept is not None:
            kept_scope = next((each for each in SCOPES if each == kept["scope"]), None)
            if kept_scope is not None:
                senders = tuple(kept["senders"] or ())
                owner = owner_of(token_digest)
                granted = Grant(kept_scope, owner, kept["user_data_prefix"], senders)
        self._cache[token_digest] = (granted, now)
        return granted

    async def load_key(self, pool: Pool) -> bool:
        """Read the deployment's random key (made at its first start, kept in the database,
        the same for every process); `secret` derives from it. False when it cannot be
        read yet (the database away, or not migrated)."""
        try:
            async with pool.acquire() as conn:
                await conn.execute(_KEEP_KEY, secrets.token_bytes(32))
                self._key = bytes(await conn.fetchval(_READ_KEY))
        except UNAVAILABLE_OR_UNMIGRATED:
            return False
        return True

    async def keep_trying_key(self, pool: Pool, every: float = 1.0) -> None:
        """`load_key` until it succeeds (a process started before the migrations ran)."""
        while not await self.load_key(pool):  # noqa: ASYNC110 (polls the database, no event)
            await asyncio.sleep(every)

    def secret(self, purpose: str) -> bytes:
        """A key for `purpose` (cursors, session cookies) that every process of the deployment
        derives alike: from its random key in the database, and the environment's tokens
        (a change of them renews it). Nothing public signs anything."""
        if self._key is None:
            raise KeyNotLoaded("the deployment's key could not be read yet: retry shortly")
        material = "\n".join([purpose, *sorted(self.readers), "", *sorted(self.admins)])
        return hmac.digest(self._key, material.encode(), "sha256")

    async def bearer_scope(self, request: Request) -> Scope | None:
        """The scope of the request's bearer token; what it may do goes to
        `request.state.grant` (None without a valid token)."""
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        request.state.grant = None
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        token_digest = digest(presented)
        pool = request.state.api_pool
        if self._known(token_digest):
            grant = await self.grant_of_digest(pool, token_digest)
        else:
            # A token not known to open anything here: a try that counts, before it
            # is looked up (given back if it opens something).
            address = request.client.host if request.client else "unknown"
            async with pool.acquire() as conn:
                wait = await self.throttle.charge(conn, address)
            if wait is not None:
                raise Throttled(wait)
            grant = await self.grant_of_digest(pool, token_digest)
            if grant is not None:
                async with pool.acquire() as conn:
                    await self.throttle.refund(conn, address)
        request.state.grant = grant
        return grant.scope if grant is not None else None

    def _known(self, token_digest: str) -> bool:
        """A token of the environment, or one the database granted within the cache's time:
        no guess (its check costs nothing and tells nothing new)."""
        if any(hmac.compare_digest(known, token_digest) for known in self._env):
            return True
        cached = self._cache.get(token_digest)
        return (
            cached is not None
            and cached[0] is not None
            and time.monotonic() - cached[1] < CACHE_SECONDS
        )

    def guard(self, endpoint: Endpoint, scope: Scope | None = READ) -> Endpoint:
        """`endpoint`, answering 401 without a token and 403 when the token may not do this.

        `scope` None: any valid token, whatever its scope; SEND: a send or admin token.
        """

        async def guarded(request: Request) -> Response:
            try:
                granted = await self.bearer_scope(request)
            except Throttled as throttled:
                return error_response(
                    429,
                    f"too many tries of wrong tokens from this address: wait {throttled.wait} s",
                    headers={"retry-after": str(throttled.wait)},
                )
            if granted is None:
                return error_response(
                    401,
                    "a valid API token is required (Authorization: Bearer ...)",
                    headers={"www-authenticate": "Bearer"},
                )
            if granted == SEND and scope not in (SEND, None):
                return error_response(403, SEND_ONLY)
            if scope == SEND and granted == READ:
                return error_response(403, SEND_REQUIRED)
            if scope == ADMIN and granted != ADMIN:
                return error_response(403, ADMIN_REQUIRED)
            return await endpoint(request)

        return guarded

    def admin(self, endpoint: Endpoint) -> Endpoint:
        return self.guard(endpoint, ADMIN)

    def any_scope(self, endpoint: Endpoint) -> Endpoint:
        return self.guard(endpoint, None)

    def sender(self, endpoint: Endpoint) -> Endpoint:
        """`endpoint` for send and admin tokens; a read token is 403."""
        return self.guard(endpoint, SEND)


SEND_REQUIRED = (
    "this token may read, not send: sending needs a send or admin token"
    " (RECEIVER_SEND_TOKENS, or `receiver tokens add --scope send`)"
)
SEND_ONLY = "this token may send SMS, not read or change: use a read or admin token"
ADMIN_REQUIRED = (
    "this token may read, not change: changes need an admin token"
    " (RECEIVER_ADMIN_TOKENS, or `receiver tokens add --scope admin`)"
)
