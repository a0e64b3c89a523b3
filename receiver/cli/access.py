"""Who can open the console and the API, settled at start: the first-run admin token."""

from __future__ import annotations

import enum
from typing import NamedTuple

from receiver.api.auth import any_kept
from receiver.api.tokens import FIRST_RUN, add_token, revoke_token
from receiver.db.engine import Connection
from receiver.ingest.auth import ensure_secret_file
from receiver.settings import Settings

# The first-run admin token's file, in the data folder.
ADMIN_TOKEN_FILE = "console-admin-token"  # noqa: S105 (a file name, not a secret)


class Access(NamedTuple):
    """What the start banner says of the console and the API."""

    open: bool | None
    """Some token opens them: of the environment, or kept in the database (None: the
    database did not answer, and the environment holds none)."""
    first_run: FirstRun | None
    """What became of the first-run admin token (None: not an embedded database)."""


class FirstRun(enum.Enum):
    ACTIVE = "active"
    """It opens the console: sign in with the file's token."""
    RETIRED = "retired"
    """Revoked now: an admin token is configured."""
    REVOKED = "revoked"
    """Revoked by an admin earlier: it stays so."""


_LIVE_ADMINS = """
SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL AND scope = 'admin' AND name <> $1
"""
_FIRST_RUN_ROW = """
SELECT revoked_at FROM api_tokens WHERE name = $1 ORDER BY created_at DESC LIMIT 1
"""


async def settle_access(conn: Connection, settings: Settings, *, embedded: bool) -> Access:
    """At start: the first-run admin token made, kept or retired; whether anything opens.

    On the embedded database, with no admin token configured, a first start makes an
    admin token (kept in the data folder, its digest in `api_tokens` as
    `first-run-admin`), so that a new user's console opens at once. It works until
    an admin token is configured (environment or `receiver tokens add --scope
    admin`), which retires it, or until it is revoked.
    """
    state = None
    if embedded:
        others = await conn.fetchval(_LIVE_ADMINS, FIRST_RUN)
        first = await conn.fetchrow(_FIRST_RUN_ROW, FIRST_RUN)
        if settings.admin_tokens or others:
            if first is not None and first["revoked_at"] is None:
                await revoke_token(conn, FIRST_RUN)
                state = FirstRun.RETIRED
        elif first is not None and first["revoked_at"] is not None:
            state = FirstRun.REVOKED
        else:
            if first is None:
                token = ensure_secret_file(settings.data_dir / ADMIN_TOKEN_FILE)
                await add_token(conn, FIRST_RUN, "admin", token=token)
            state = FirstRun.ACTIVE
    kept = await any_kept(conn)
    return Access(open=bool(settings.api_tokens or settings.admin_tokens or kept), first_run=state)
