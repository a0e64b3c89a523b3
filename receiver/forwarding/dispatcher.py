"""The outbox dispatcher: claims due forwards, posts them to their handlers, records the outcome.

Any number of dispatchers may run against one database. A forward is claimed with
`FOR UPDATE SKIP LOCKED` in a short transaction that leases it (`in_flight` until
`next_attempt_at`); the HTTP call happens outside any transaction, and a dispatcher
that dies loses its lease, so another one retries. A forward waits while an earlier
one of its conversation is pending or in flight: replies from one phone number to
one handler arrive in order, and a retry holds back only its own conversation.
Dispatchers wake on NOTIFY and poll as a fallback.

Each handler has a policy of its own (receiver.forwarding.policy): the answers final
for it, its retry schedule, its requests in flight at once (`max_in_flight`, counted
across every dispatcher at each claim) and its rate (`rate`, shared across
processes). A 410 disables it; its forwards wait. Its health is kept as it changes:
`failing_since` is set by the first failure after a success and cleared by the next
success, each change a notice to its owners (`notify_url`), sent from here with
retries; a handler failing for RECEIVER_HANDLER_DISABLE_AFTER while forwards wait is
disabled, with the reason.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from datetime import UTC, datetime

import asyncpg
import httpx
import structlog

from receiver import metrics
from receiver.db.engine import UNAVAILABLE_ERRORS, Pool, asyncpg_dsn
from receiver.db.loop import Next, WorkLoop
from receiver.db.models import ForwardState
from receiver.db.rate import SharedRate
from receiver.forwarding import signing
from receiver.forwarding.delivery import Answer, Claim, post, reply_payload, status_payload
from receiver.forwarding.destinations import Destinations
from receiver.forwarding.handlers import ANYWHERE, NOTICE
from receiver.forwarding.health import HandlerHealth
from receiver.forwarding.policy import RetryPolicy, Verdict
from receiver.forwarding.routing import NOTIFY_CHANNEL, wake_dispatchers
from receiver.retry import Failures

log = structlog.get_logger("receiver.dispatcher")

_STATE_AFTER = {
    Verdict.DONE: ForwardState.DONE,
    Verdict.RETRY: ForwardState.PENDING,
    Verdict.DEAD: ForwardState.DEAD,
    Verdict.GONE: ForwardState.PENDING,
}
_LEASE_MARGIN_SECONDS = 30

# Each handler and each kind of news (replies, status changes) gets a share of every
# claim, at most $3 forwards, in the order created: a million status changes queued
# for one handler do not delay a reply to another, nor that handler's own replies.
# Handlers that already have their share of this dispatcher's requests in flight
# ($4) wait their turn: one that is down holds back only its own forwards. A handler
# with a `max_in_flight` gets no more than it leaves room for, counting the requests
# every dispatcher has in flight to it; one with a `rate`, no more than ten seconds of
# it, so that its turns fit within the lease.
_CLAIM = """
WITH due AS (
    SELECT c.id FROM handlers h
    CROSS JOIN (VALUES ('reply'), ('status')) AS k(kind)
    CROSS JOIN LATERAL (
        SELECT c.id FROM forwards c
        WHERE c.handler_id = h.id AND c.kind = k.kind
          AND c.state IN ('pending', 'in_flight') AND c.next_attempt_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM forwards e
              WHERE e.conversation = c.conversation AND e.id < c.id
                AND e.state IN ('pending', 'in_flight')
          )
        ORDER BY c.id
        LIMIT LEAST(
            $3,
            -- (GREATEST ignores NULLs: each limit applies only when it is set.)
            CASE WHEN h.rate IS NULL THEN $3 ELSE GREATEST(1, floor(h.rate * 10))::int END,
            CASE WHEN h.max_in_flight IS NULL THEN $3 ELSE GREATEST(0, h.max_in_flight - (
                SELECT count(*) FROM forwards i
                WHERE i.handler_id = h.id AND i.state = 'in_flight' AND i.next_attempt_at > now()
            ))::int END
        )
        FOR UPDATE OF c SKIP LOCKED
    ) c
    WHERE h.enabled AND NOT h.id = ANY($4::bigint[])
    LIMIT $1
)
UPDATE forwards f SET
    state = 'in_flight',
    attempts = f.attempts + 1,
    next_attempt_at = now() + make_interval(secs => h.timeout + $2)
FROM due, handlers h
WHERE f.id = due.id AND h.id = f.handler_id
RETURNING f.id, f.kind, f.handler_id, f.attempts, h.url, h.secret, h.timeout,
    CASE WHEN h.previous_secret_until > now() THEN h.previous_secret END AS previous_secret,
    h.final_statuses, h.attempts AS max_attempts, h.first_retry, h.rate, h.max_in_flight,
    h.failing_since IS NOT NULL AS failing
"""
# At most this many forwards a claim takes for one handler and kind.
_SHARE = 4

_PAYLOAD = """
SELECT f.id, f.event_id, f.rule, f.user_data, e.type, e.received_at, e.body,
    mo.sms_id, mo.from_number, mo.to_number, mo.text, mo.created_at, mo.encoding, mo.parts,
    mt.sms_id AS mt_id, mt.user_data AS mt_user_data, mt.sent_at AS mt_sent_at
FROM forwards f
JOIN events e ON e.event_id = f.event_id
JOIN messages mo ON mo.sms_id = f.sms_id
LEFT JOIN messages mt ON mt.sms_id = f.mt_sms_id
WHERE f.id = $1
"""

# A status change with the SMS's record as the API shows it, history included.
_STATUS_PAYLOAD = """
SELECT f.id, f.user_data AS routed_by, f.status_before, f.status_after, f.status_at,
    f.created_at AS announced_at, e.received_at,
    m.sms_id, m.to_number, m.from_number, m.user_data, m.status, m.provider_status,
    m.status_at AS current_at, m.error, m.parts, m.cost, m.cost_cents, m.network,
    (SELECT coalesce(json_agg(json_build_object('before', t.before, 'after', t.after,
                                                'at', t.at) ORDER BY t.at, t.id), '[]')
     FROM transitions t WHERE t.sms_id = m.sms_id) AS history
FROM forwards f
JOIN events e ON e.event_id = f.event_id
JOIN messages m ON m.sms_id = f.sms_id
WHERE f.id = $1
"""

_NOT_YET = """
UPDATE forwards SET state = 'pending', attempts = attempts - 1,
    next_attempt_at = now() + interval '1 second'
WHERE id = $1 AND attempts = $2 AND state = 'in_flight'
"""

# A 410: the forward waits for its handler, this attempt not counted against it.
_WAIT_FOR_HANDLER = """
UPDATE forwards SET state = 'pending', attempts = attempts - 1, next_attempt_at = now(),
    last_error = $3
WHERE id = $1 AND attempts = $2 AND state = 'in_flight'
"""
_GONE = """
UPDATE handlers SET enabled = false, disabled_reason = $2, disabled_at = now()
WHERE id = $1 AND enabled
RETURNING id
"""

_RECORD_ATTEMPT = """
INSERT INTO forward_attempts (forward_id, at, status_code, excerpt, error, duration_ms)
VALUES ($1, now(), $2, $3, $4, $5)
"""

# Guarded by the attempt number: a dispatcher whose lease ran out and whose forward
# was claimed again does not overwrite the newer attempt's state.
_SETTLE = """
UPDATE forwards SET
    state = $3::text,
    next_attempt_at = CASE WHEN $3::text = 'pending' THEN now() + make_interval(secs => $4)
                           ELSE next_attempt_at END,
    delivered_at = CASE WHEN $3::text = 'done' THEN now() ELSE delivered_at END,
    last_error = $5
WHERE id = $1 AND attempts = $2 AND state = 'in_flight'
"""


class Dispatcher:
    """Delivers forwards until stopped; one per process is enough, several are safe."""

    def __init__(
        self,
        pool: Pool,
        database_url: str,
        *,
        policy: RetryPolicy,
        concurrency: int = 16,
        poll_interval: float = 5.0,
        destinations: Destinations = ANYWHERE,
        disable_after: float = 3 * 86400.0,
    ) -> None:
        """`destinations`: where forwards may go, checked again before each one is sent.
        `disable_after`: seconds a handler may fail while forwards wait before it is
        disabled."""
        self._pool = pool
        self._destinations = destinations
        self._dsn = asyncpg_dsn(database_url)
        self._policy = policy
        self._concurrency = concurrency
        self._loop = WorkLoop("dispatcher", self._dsn, NOTIFY_CHANNEL, poll_interval)
        self._outage = Failures("receiver.dispatcher")
        # Requests in flight by handler: one handler takes at most half the slots.
        self._per_handler: Counter[int] = Counter()
        self._handler_share = max(1, concurrency // 2)
        # A handler's own max_in_flight, as its last claim said.
        self._limits: dict[int, int] = {}
        self._rates: dict[tuple[int, float], SharedRate] = {}
        self._client = httpx.AsyncClient(follow_redirects=False)
        self._health = HandlerHealth(pool, self._client, disable_after)

    async def run(self) -> None:
        """Claim and deliver until cancelled; survives database outages."""
        try:
            await self._loop.run(self._turn)
        finally:
            await self._client.aclose()

    async def _turn(self) -> Next:
        await self._health.housekeeping()
        await self._claim_and_start()
        return None

    async def _claim_and_start(self) -> None:
        room = self._concurrency - len(self._loop.running)
        if room <= 0:
            return
        full = [
            h for h, n in self._per_handler.items() if n >= self._limits.get(h, self._handler_share)
        ]
        try:
            async with self._pool.acquire() as conn:
                records = await conn.fetch(
                    _CLAIM, room, _LEASE_MARGIN_SECONDS, min(room, _SHARE), full
                )
        except UNAVAILABLE_ERRORS as error:
            self._outage.add("dispatcher_database_unavailable", error)
            return
        # Not migrated yet, a statement cancelled, a bug: tried again at the next poll.
        # Ending here would stop every forward while the service looks healthy.
        except asyncpg.PostgresError as error:
            log.error("dispatcher_claim_failed", error=repr(error))
            return
        except Exception:
            log.exception("dispatcher_claim_failed")
            return
        self._outage.clear("dispatcher_database_available")
        for record in records:
            claim = Claim(
                forward_id=record["id"],
                kind=record["kind"],
                handler_id=record["handler_id"],
                attempt=record["attempts"],
                url=record["url"],
                secret=record["secret"],
                timeout=record["timeout"],
                previous_secret=record["previous_secret"],
                policy=self._policy.for_handler(
                    attempts=record["max_attempts"],
                    first_retry=record["first_retry"],
                    final_statuses=record["final_statuses"] or (),
                ),
                rate=record["rate"],
                failing=record["failing"],
            )
            if record["max_in_flight"] is not None:
                self._limits[claim.handler_id] = record["max_in_flight"]
            else:
                self._limits.pop(claim.handler_id, None)
            self._per_handler[claim.handler_id] += 1
            # When it ends the loop wakes: it may free the next of its conversation.
            self._loop.start(
                self._deliver(claim),
                name=f"forward-{claim.forward_id}",
                done=functools.partial(self._finished, claim.handler_id),
            )

    def _finished(self, handler_id: int, task: asyncio.Task[None]) -> None:
        self._per_handler[handler_id] -= 1
        if not self._per_handler[handler_id]:
            del self._per_handler[handler_id]

    async def _deliver(self, claim: Claim) -> None:
        try:
            async with self._pool.acquire() as conn:
                status = claim.kind == "status"
                row = await conn.fetchrow(_STATUS_PAYLOAD if status else _PAYLOAD, claim.forward_id)
                if row is None:
                    # Its message record is not there: a rebuild has emptied the table
                    # and not made it again yet. Tried again shortly, attempt not counted.
                    await conn.execute(_NOT_YET, claim.forward_id, claim.attempt)
                    return
            if status:
                body, message_id = status_payload(row), f"status_{claim.forward_id}"
            else:
                body, message_id = reply_payload(row), row["event_id"]
            refused = await self._destinations.check_now(claim.url)
            if refused is None and claim.rate is not None:
                await self._rate(claim.handler_id, claim.rate).wait()
            headers = signing.headers(
                message_id=message_id,
                timestamp=int(time.time()),
                body=body,
                secret=claim.secret,
                previous=claim.previous_secret,
            )
            if refused is not None:
                answer = Answer(
                    status=None, excerpt=None, error=refused, retry_after=None, duration_ms=0.0
                )
            else:
                answer = await post(self._client, claim.url, body, headers, within=claim.timeout)
            await self._settle(claim, answer, row["received_at"])
        except UNAVAILABLE_ERRORS as error:
            # The lease runs out and the forward is tried again: at least once.
            log.warning("forward_unsettled", forward_id=claim.forward_id, error=repr(error))
        except Exception:
            log.exception("forward_failed", forward_id=claim.forward_id)

    def _rate(self, handler_id: int, rate: float) -> SharedRate:
        key = (handler_id, rate)
        if key not in self._rates:
            self._rates[key] = SharedRate(self._pool, rate, name=f"handler:{handler_id}")
        return self._rates[key]

    async def _settle(self, claim: Claim, answer: Answer, received_at: datetime) -> None:
        decision = claim.policy.decide(
            attempt=claim.attempt, status=answer.status, retry_after=answer.retry_after
        )
        error = answer.error or decision.reason or None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _RECORD_ATTEMPT,
                claim.forward_id,
                answer.status,
                answer.excerpt,
                answer.error,
                answer.duration_ms,
            )
            if decision.verdict is Verdict.GONE:
                await conn.execute(
                    _WAIT_FOR_HANDLER, claim.forward_id, claim.attempt, decision.reason
                )
                if await conn.fetchval(_GONE, claim.handler_id, decision.reason) is not None:
                    await conn.execute(NOTICE, claim.handler_id, "disabled", decision.reason)
                    log.warning(
                        "handler_disabled", handler_id=claim.handler_id, reason=decision.reason
                    )
            else:
                await conn.execute(
                    _SETTLE,
                    claim.forward_id,
                    claim.attempt,
                    _STATE_AFTER[decision.verdict].value,
                    decision.delay,
                    None if decision.verdict is Verdict.DONE else error,
                )
            await self._health.changed(conn, claim, decision, error)
            if decision.verdict is not Verdict.RETRY:
                await wake_dispatchers(conn)
        metrics.FORWARD_ATTEMPTS.labels(
            "ok" if decision.verdict is Verdict.DONE else "failed"
        ).inc()
        if decision.verdict is Verdict.DONE:
            metrics.FORWARDS_DONE.inc()
            metrics.FORWARD_SECONDS.observe((datetime.now(UTC) - received_at).total_seconds())
        elif decision.verdict is Verdict.DEAD:
            metrics.FORWARDS_DEAD.inc()
        log.info(
            "forward",
            forward_id=claim.forward_id,
            attempt=claim.attempt,
            status=answer.status,
            verdict=decision.verdict.value,
            delay=round(decision.delay, 3),
            duration_ms=answer.duration_ms,
            error=error,
        )
