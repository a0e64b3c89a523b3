"""A handler's health, kept by the dispatchers: failing from the first failure after a
success, recovered at the next success, each change a notice to its owners
(`notify_url`), sent with retries; disabled when it fails for
RECEIVER_HANDLER_DISABLE_AFTER while forwards wait; notices a month old forgotten."""

from __future__ import annotations

import time

import httpx
import structlog

from receiver.db.engine import UNAVAILABLE_ERRORS, Connection, Pool
from receiver.forwarding import signing
from receiver.forwarding.delivery import Claim, post
from receiver.forwarding.handlers import NOTICE
from receiver.forwarding.policy import Decision, Verdict
from receiver.retry import Backoff

log = structlog.get_logger("receiver.dispatcher")

_FAILING = """
UPDATE handlers SET failing_since = now() WHERE id = $1 AND failing_since IS NULL RETURNING id
"""
_RECOVERED = """
UPDATE handlers SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL
RETURNING id
"""
# Handlers failing for longer than $1 seconds while their forwards wait.
_STALE = """
UPDATE handlers h SET enabled = false, disabled_at = now(), disabled_reason = $2
WHERE h.enabled AND h.failing_since < now() - $1 * interval '1 second'
  AND EXISTS (SELECT 1 FROM forwards f
              WHERE f.handler_id = h.id AND f.state IN ('pending', 'in_flight'))
RETURNING h.id
"""
# Notices sent, or given up on, a month ago: forgotten.
_FORGET_NOTICES = """
DELETE FROM handler_notices
WHERE created_at < now() - interval '30 days' AND (sent_at IS NOT NULL OR next_at = 'infinity')
"""
# Notices due, leased to this dispatcher for a minute.
_CLAIM_NOTICES = """
WITH due AS (
    SELECT id FROM handler_notices
    WHERE sent_at IS NULL AND next_at <= now()
    ORDER BY next_at, id
    LIMIT 20
    FOR UPDATE SKIP LOCKED
)
UPDATE handler_notices n SET next_at = now() + interval '1 minute', attempts = n.attempts + 1
FROM due, handlers h
WHERE n.id = due.id AND h.id = n.handler_id
RETURNING n.id, n.url, n.body, n.attempts, h.secret
"""
_NOTICE_SENT = "UPDATE handler_notices SET sent_at = now(), last_error = NULL WHERE id = $1"
_NOTICE_LATER = """
UPDATE handler_notices SET last_error = $2,
    next_at = CASE WHEN attempts >= $3 THEN 'infinity'
                   ELSE now() + make_interval(secs => $4) END
WHERE id = $1
"""
NOTICE_ATTEMPTS = 8
_HOUSEKEEPING_SECONDS = 60.0
_NOTICE_SECONDS = 1.0
# 30 s after a notice failed, doubled up to an hour, NOTICE_ATTEMPTS times.
NOTICE_BACKOFF = Backoff(first=30.0, cap=3600.0, jitter=0.0)


class HandlerHealth:
    """The health side of a dispatcher: what each attempt changes, and the housekeeping
    every turn of its loop does (at most once a minute, notices once a second)."""

    def __init__(self, pool: Pool, client: httpx.AsyncClient, disable_after: float) -> None:
        self._pool = pool
        self._client = client
        self._disable_after = disable_after
        self._housekept = 0.0
        self._noticed = 0.0

    async def changed(
        self, conn: Connection, claim: Claim, decision: Decision, error: str | None
    ) -> None:
        """The handler's health as it changes: a notice at the first failure after a success,
        and at the first success after failures. Nothing written while it stays the same."""
        if decision.verdict is Verdict.DONE:
            if claim.failing and await conn.fetchval(_RECOVERED, claim.handler_id) is not None:
                await conn.execute(NOTICE, claim.handler_id, "recovered", "a 2xx again")
                log.info("handler_recovered", handler_id=claim.handler_id)
        elif not claim.failing and await conn.fetchval(_FAILING, claim.handler_id) is not None:
            await conn.execute(NOTICE, claim.handler_id, "failing", error or "failed")
            log.warning("handler_failing", handler_id=claim.handler_id, error=error)

    async def housekeeping(self) -> None:
        """Handlers failing for too long disabled and notices a month old forgotten (every
        minute); due notices sent."""
        try:
            now = time.monotonic()
            if now - self._housekept >= min(_HOUSEKEEPING_SECONDS, self._disable_after / 4):
                self._housekept = now
                await self._disable_stale()
            # At most a look a second: the loop turns at every finished forward.
            if now - self._noticed >= _NOTICE_SECONDS:
                self._noticed = now
                await self._send_notices()
        except UNAVAILABLE_ERRORS as error:
            log.warning("dispatcher_database_unavailable", error=repr(error))
        except Exception:
            log.exception("dispatcher_housekeeping_failed")

    async def _disable_stale(self) -> None:
        reason = (
            f"no 2xx for {_span(self._disable_after)} while forwards waited"
            " (RECEIVER_HANDLER_DISABLE_AFTER)"
        )
        async with self._pool.acquire() as conn, conn.transaction():
            for row in await conn.fetch(_STALE, self._disable_after, reason):
                await conn.execute(NOTICE, row["id"], "disabled", reason)
                log.warning("handler_disabled", handler_id=row["id"], reason=reason)
            await conn.execute(_FORGET_NOTICES)

    async def _send_notices(self) -> None:
        async with self._pool.acquire() as conn:
            due = await conn.fetch(_CLAIM_NOTICES)
        for notice in due:
            body = bytes(notice["body"])
            headers = signing.headers(
                message_id=f"notice_{notice['id']}",
                timestamp=int(time.time()),
                body=body,
                secret=notice["secret"],
            )
            answer = await post(self._client, notice["url"], body, headers, within=10.0)
            async with self._pool.acquire() as conn:
                if answer.status is not None and 200 <= answer.status < 300:
                    await conn.execute(_NOTICE_SENT, notice["id"])
                else:
                    why = answer.error or f"the notice URL answered {answer.status}"
                    wait = NOTICE_BACKOFF.delay(notice["attempts"])
                    await conn.execute(_NOTICE_LATER, notice["id"], why, NOTICE_ATTEMPTS, wait)
                    log.warning("handler_notice_failed", notice_id=notice["id"], error=why)


def _span(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g} d"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"
