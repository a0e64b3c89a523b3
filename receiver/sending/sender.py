"""The sender: takes durable sends to CALLR, never twice, and finds out what a lost answer hid.

Any number of senders run against one database (every serve process and every
`receiver worker`). A due send is claimed with `FOR UPDATE SKIP LOCKED` and a row
of `send_claims` on its current step, until a lease ends (`sends` is written by the
steps alone). Each step is an event whose id holds the send's next `seq`: two
senders that ever held one send write the same event id, the second finds it stored
and stops, so no try is made twice.

A try is written (`attempt`) before the request leaves, so a sender that dies
during the call leaves a `submitted` send that another one looks for, never one
that is sent again blindly. What CALLR answers decides the next step:

- its SMS id: `accepted`, the message record made at once with the send's fields;
- a refusal (JSON-RPC error, v2 4xx): `rejected`, with CALLR's reason, for good;
- nothing created for certain (no connection, 429, 5xx): `retry`, after a pause
  that doubles from 1 s to a minute, or CALLR's Retry-After;
- an answer lost after the request may have reached CALLR (a timeout, a cut
  connection, an answer that cannot be read): `lost`, then looked for.

A lost send is looked for in CALLR's list of the SMS sent around the try, every
page of it (JSON-RPC `sms.search` with the login for a v1 send, `GET /v2.0/sms` with
the API key for a v2 one), and in the records of CALLR's own webhooks, matching the
number, the user_data and the text as CALLR may have stored it (`%STOPNUM%`
replaced, a forced GSM's conversion: receiver.callr.gsm.text_matcher), among the
SMS no other send holds. Found: `accepted`. Not in a whole list asked
RECEIVER_SEND_LOOKUP_AFTER after the try or later, and no SMS to the number whose
text may be the send's: `absent`, and it is sent again. Anything short of that (a
list cut, an SMS that may be it, CALLR's list out of reach, no credentials to read
it) is doubt: within RECEIVER_SEND_UNKNOWN_AFTER it becomes `unknown`, never sent
again by itself; an admin settles it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from receiver import metrics
from receiver.callr.api import CallrApi, CallrApiError, SendAnswer
from receiver.callr.gsm import use_callr_table
from receiver.callr.sends import Step
from receiver.db.engine import UNAVAILABLE_ERRORS, Pool, Record
from receiver.db.loop import Next, WorkLoop
from receiver.retry import Backoff, Failures
from receiver.sending.lookup import LostAnswers
from receiver.sending.requests import NOTIFY_CHANNEL, message_of

log = structlog.get_logger("receiver.sender")

# 1, 2, 4 ... seconds up to a minute between tries of a send CALLR did not take.
SEND_BACKOFF = Backoff(first=1.0, cap=60.0)

# Due sends on which no claim on their current step runs, claimed for `$2` seconds.
# A claim made meanwhile by another sender is seen by the upsert (it waits for that
# sender's commit, then reads the claim as it is): only one of them returns the send.
CLAIM = """
WITH due AS (
    SELECT s.id, s.seq FROM sends s
    WHERE s.state IN ('queued', 'submitted') AND s.next_at <= now()
      AND NOT EXISTS (
        SELECT 1 FROM send_claims c WHERE c.send_id = s.id AND c.seq = s.seq AND c.until > now()
      )
    ORDER BY s.next_at
    LIMIT $1
    FOR UPDATE OF s SKIP LOCKED
), claimed AS (
    INSERT INTO send_claims AS c (send_id, seq, until)
    SELECT id, seq, now() + $2 * interval '1 second' FROM due
    ON CONFLICT (send_id) DO UPDATE SET seq = EXCLUDED.seq, until = EXCLUDED.until
    WHERE c.seq <> EXCLUDED.seq OR c.until <= now()
    RETURNING c.send_id
)
SELECT s.* FROM sends s JOIN claimed ON claimed.send_id = s.id
"""

# Claims that hold nothing any more: lapsed, or on a step the send has left.
_FORGET_CLAIMS = """
DELETE FROM send_claims c WHERE c.until <= now()
   OR NOT EXISTS (SELECT 1 FROM sends s WHERE s.id = c.send_id AND s.seq = c.seq)
"""
_FORGET_EVERY = 300.0


class Sender(LostAnswers):
    """Claims due sends and takes each one step further; run it as a task."""

    def __init__(
        self,
        pool: Pool,
        dsn: str,
        api: Callable[[], CallrApi],
        *,
        can_list: frozenset[str],
        timeout: float,
        lookup_after: timedelta,
        unknown_after: timedelta,
        routing_window: timedelta,
        concurrency: int = 4,
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(
            pool,
            can_list=can_list,
            lookup_after=lookup_after,
            unknown_after=unknown_after,
            routing_window=routing_window,
        )
        self._dsn = dsn
        self._make_api = api
        self._timeout = timeout
        self._concurrency = concurrency
        self._loop = WorkLoop("sender", dsn, NOTIFY_CHANNEL, poll_interval)
        # Longer than a turn at CALLR's rate and the call: a live sender keeps its claim.
        self._lease = 120.0 + 2 * timeout
        self._forgotten_at = 0.0
        self._outage = Failures("receiver.sender")

    async def run(self) -> None:
        """Claim and send until cancelled; survives database and CALLR outages."""
        async with self._make_api() as api:
            # Beside the sends, never before them nor in their count: CALLR out of
            # reach delays nothing.
            table = asyncio.create_task(
                _load_callr_table(api) if "v1" in self._can_list else asyncio.sleep(0),
                name="sender-gsm-table",
            )
            try:
                await self._loop.run(lambda: self._claim_and_start(api))
            finally:
                table.cancel()
                await asyncio.gather(table, return_exceptions=True)

    async def _claim_and_start(self, api: CallrApi) -> Next:
        room = self._concurrency - len(self._loop.running)
        if room <= 0:
            return None
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(CLAIM, room, self._lease)
                if time.monotonic() - self._forgotten_at > _FORGET_EVERY:
                    await conn.execute(_FORGET_CLAIMS)
                    self._forgotten_at = time.monotonic()
        except UNAVAILABLE_ERRORS as error:
            self._outage.add("sender_database_unavailable", error)
            return None
        except asyncpg.PostgresError as error:
            log.error("sender_claim_failed", error=repr(error))
            return None
        self._outage.clear("sender_database_available")
        for row in rows:
            self._loop.start(self._step(api, row), name=f"send-{row['id']}")
        return None

    async def _step(self, api: CallrApi, row: Record) -> None:
        try:
            if row["state"] == "queued":
                await self.attempt(api, row)
            else:
                await self.resolve(api, row)
        except asyncio.CancelledError:
            raise
        except UNAVAILABLE_ERRORS as error:
            # The claim lapses and the send is taken again: its steps say where it is.
            self._outage.add("sender_database_unavailable", error, send_id=row["id"])
        except Exception:
            log.exception("send_step_failed", send_id=row["id"])

    # ------------------------------------------------------------------ a try

    async def attempt(self, api: CallrApi, row: Record) -> None:
        """One try of a queued send: its turn at CALLR's rate, the try written, the call."""
        await api.turn()
        now = datetime.now(UTC)
        attempt = row["attempts"] + 1
        seq = row["seq"] + 1
        written = await self._write(
            row,
            seq,
            Step.ATTEMPT,
            now,
            attempt=attempt,
            api=row["api"],
            # Looked for if no answer is written by then (the sender died).
            next_at=(now + timedelta(seconds=self._lease)).isoformat(),
        )
        if not written:
            return
        answer = await api.send_sms(
            row["api"],
            to=row["to_number"],
            text=row["text"],
            sender=row["from_number"],
            user_data=row["user_data"],
            nature=row["nature"],
            encoding=row["forced_encoding"],
        )
        await self._answered(row, seq + 1, attempt, answer)

    async def _answered(self, row: Record, seq: int, attempt: int, answer: SendAnswer) -> None:
        now = datetime.now(UTC)
        metrics.SENDS.labels(answer.outcome).inc()
        if answer.outcome == "accepted":
            await self._write(
                row,
                seq,
                Step.ACCEPTED,
                now,
                attempt=attempt,
                sms_id=answer.sms_id,
                how="answer",
                message=message_of(row, parts=answer.parts, encoding=answer.encoding),
            )
            log.info("send_accepted", send_id=row["id"], sms_id=answer.sms_id, attempt=attempt)
        elif answer.outcome == "rejected":
            await self._write(row, seq, Step.REJECTED, now, attempt=attempt, error=answer.error)
            log.warning("send_rejected", send_id=row["id"], error=answer.error)
        elif answer.outcome == "not_sent":
            pause = SEND_BACKOFF.delay(attempt)
            if answer.wait is not None:
                pause = max(pause, min(answer.wait, 3600.0))
            await self._write(
                row,
                seq,
                Step.RETRY,
                now,
                attempt=attempt,
                reason=answer.reason,
                next_at=(now + timedelta(seconds=pause)).isoformat(),
            )
            log.warning(
                "send_not_sent", send_id=row["id"], reason=answer.reason, retry_in_s=round(pause, 1)
            )
        else:
            first_look = min(self._lookup_after, timedelta(seconds=5))
            await self._write(
                row,
                seq,
                Step.LOST,
                now,
                attempt=attempt,
                reason=answer.reason,
                next_at=(now + first_look).isoformat(),
            )
            log.warning("send_answer_lost", send_id=row["id"], reason=answer.reason)

    # ------------------------------------------------------------- a lost answer

    # ------------------------------------------------------------------ steps


async def _load_callr_table(api: CallrApi) -> None:
    """CALLR's own GSM table, once a start: the offline one when it cannot be had."""
    use_callr_table({})
    try:
        table = await api.gsm_charset_mapping()
    except CallrApiError as error:
        log.warning("callr_gsm_table_unavailable", error=str(error))
        return
    use_callr_table(table)
    log.info("callr_gsm_table_loaded", characters=len(table))
