"""The sender: takes durable sends to CALLR, never twice, and finds out what a lost answer hid.

Any number of senders run against one database (every serve process and every
`receiver worker`). A send is claimed with `FOR UPDATE SKIP LOCKED` by moving its
`next_at` past the lease, the way the dispatcher claims forwards. Each step is an
event whose id holds the send's next `seq`: two senders that ever held one send
write the same event id, the second finds it stored and stops, so no try is made
twice.

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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from receiver import metrics
from receiver.callr.api import CallrApi, CallrApiError, Listing, SendAnswer
from receiver.callr.gsm import TextMatcher, text_matcher, use_callr_table
from receiver.callr.sends import Step
from receiver.db.engine import UNAVAILABLE_ERRORS, Pool, Record
from receiver.db.loop import Next, WorkLoop
from receiver.retry import Backoff
from receiver.sending.requests import NOTIFY_CHANNEL, append_step, message_of

log = structlog.get_logger("receiver.sender")

SOURCE = "sender"
_CLOCK_SKEW = timedelta(seconds=60)
# 1, 2, 4 ... seconds up to a minute between tries of a send CALLR did not take.
SEND_BACKOFF = Backoff(first=1.0, cap=60.0)

_CLAIM = """
WITH due AS (
    SELECT id FROM sends
    WHERE state IN ('queued', 'submitted') AND next_at <= now()
    ORDER BY next_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE sends s SET next_at = now() + $2 * interval '1 second'
FROM due WHERE s.id = due.id
RETURNING s.*
"""
_LATER = "UPDATE sends SET next_at = $2 WHERE id = $1 AND seq = $3"
# SMS ids among `$1` that a send other than `$2` holds already.
_HELD = "SELECT sms_id FROM sends WHERE sms_id = ANY($1::text[]) AND id <> $2"
# Another send of the same number, text and user_data whose try is in flight (its
# attempt written, no outcome yet, its lease running): the SMS a look-up would find
# may be that one's, which its answer will name.
_TWIN_IN_FLIGHT = """
SELECT EXISTS (
    SELECT 1 FROM sends s
    WHERE s.id <> $1 AND s.state = 'submitted' AND s.reason IS NULL AND s.next_at > now()
      AND s.to_number = $2 AND s.text = $3 AND s.user_data IS NOT DISTINCT FROM $4
)
"""
_TWIN_PAUSE = timedelta(seconds=2)
# The outbound SMS CALLR's webhooks reported to a send's number around its try, no
# other send holding them: their texts are matched as CALLR may have stored them.
_SEEN = """
SELECT m.sms_id, m.text FROM messages m
WHERE m.direction = 'outbound' AND m.to_number = $1
  AND (m.user_data IS NULL OR m.user_data = '' OR m.user_data = $2)
  AND m.created_at BETWEEN $3 AND $4
  AND NOT EXISTS (SELECT 1 FROM sends s WHERE s.sms_id = m.sms_id AND s.id <> $5)
ORDER BY m.created_at, m.sms_id
LIMIT 500
"""


class Sender:
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
        self._pool = pool
        self._dsn = dsn
        self._make_api = api
        self._can_list = can_list
        """The APIs whose sends can be looked for: v1 with the login, v2 with the key."""
        self._timeout = timeout
        self._lookup_after = lookup_after
        self._unknown_after = unknown_after
        self._window = routing_window
        self._concurrency = concurrency
        self._loop = WorkLoop("sender", dsn, NOTIFY_CHANNEL, poll_interval)
        # Longer than a turn at CALLR's rate and the call: a live sender keeps its claim.
        self._lease = 120.0 + 2 * timeout

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
                rows = await conn.fetch(_CLAIM, room, self._lease)
        except UNAVAILABLE_ERRORS as error:
            log.warning("sender_database_unavailable", error=repr(error))
            return None
        except asyncpg.PostgresError as error:
            log.error("sender_claim_failed", error=repr(error))
            return None
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
            log.warning("sender_database_unavailable", send_id=row["id"], error=repr(error))
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

    async def resolve(self, api: CallrApi, row: Record) -> None:
        """Find out what became of a try whose answer was lost (or whose sender died)."""
        tried_at = row["attempted_at"] or row["updated_at"]
        now = datetime.now(UTC)
        since, until = tried_at - _CLOCK_SKEW, now + _CLOCK_SKEW
        matcher = text_matcher(row["text"], row["forced_encoding"])
        async with self._pool.acquire() as conn:
            twin = await conn.fetchval(
                _TWIN_IN_FLIGHT, row["id"], row["to_number"], row["text"], row["user_data"]
            )
            if twin:
                # Wait for its answer: claiming its SMS would leave it none to record.
                await conn.execute(_LATER, row["id"], now + _TWIN_PAUSE, row["seq"])
                return
            seen = await conn.fetch(
                _SEEN, row["to_number"], row["user_data"] or "", since, until, row["id"]
            )
        doubts: list[str] = []
        for record in seen:
            verdict = matcher.matches(record["text"])
            if verdict == "yes":
                await self._found(row, record["sms_id"], "webhook")
                return
            if verdict == "maybe":
                doubts.append(f"CALLR's webhook reported {record['sms_id']}, whose text may be it")
        listed = False
        if row["api"] in self._can_list:
            try:
                listing = await api.search(row["api"], "OUT", since, until, to=row["to_number"])
            except CallrApiError as error:
                log.warning("send_lookup_failed", send_id=row["id"], error=str(error))
                doubts.append(f"CALLR's list could not be read ({error})")
            else:
                found, maybe = await self._match(row, listing, matcher)
                if found is not None:
                    await self._found(row, found, "lookup")
                    return
                doubts += maybe
                if listing.complete:
                    listed = True
                else:
                    doubts.append(f"CALLR's list is not whole: {listing.why}")
        else:
            doubts.append(
                "no CALLR credentials to read its list of SMS for a "
                + ("v1 send (the login)" if row["api"] == "v1" else "v2 send (the API key)")
                + ", and no webhook reported it"
            )
        if listed and not doubts and now >= tried_at + self._lookup_after:
            reason = f"not in CALLR's whole list of the SMS sent from {since.isoformat()}"
            await self._conclude(row, Step.ABSENT, now, reason)
            return
        if now >= tried_at + self._unknown_after:
            why = "; ".join(dict.fromkeys(doubts)) or "CALLR's list did not settle it"
            reason = f"undecided {_span(self._unknown_after)} after the try: {why}"
            await self._conclude(row, Step.UNKNOWN, now, reason)
            return
        # Look again: when the list counts as complete, or in a while.
        again = (
            tried_at + self._lookup_after if listed and not doubts else now + timedelta(seconds=15)
        )
        again = max(min(again, tried_at + self._unknown_after), now + timedelta(seconds=0.2))
        async with self._pool.acquire() as conn:
            await conn.execute(_LATER, row["id"], again, row["seq"])

    async def _conclude(self, row: Record, step: Step, now: datetime, reason: str) -> None:
        """A lost answer's end without the SMS: absent (sent again) or unknown (left)."""
        await self._write(row, row["seq"] + 1, step, now, attempt=row["attempts"], reason=reason)
        metrics.SENDS.labels(step.value).inc()
        level = log.error if step is Step.UNKNOWN else log.info
        level(f"send_{step.value}", send_id=row["id"], reason=reason)

    async def _match(
        self, row: Record, listing: Listing, matcher: TextMatcher
    ) -> tuple[str | None, list[str]]:
        """The listed SMS that is the send's, no other send holding it; and the doubts: the
        listed SMS to its number whose text may be its own."""
        exact: list[str] = []
        maybe: list[str] = []
        for obj in listing.objects:
            sms_id, text = _listed(obj)
            if sms_id is None or obj.get("to") != row["to_number"]:
                continue
            # v1's objects carry the user_data; v2 sends have none.
            if "user_data" in obj and (obj.get("user_data") or None) != (row["user_data"] or None):
                continue
            verdict = matcher.matches(text)
            if verdict == "yes":
                exact.append(sms_id)
            elif verdict == "maybe":
                maybe.append(sms_id)
        if not exact and not maybe:
            return None, []
        async with self._pool.acquire() as conn:
            held = {r["sms_id"] for r in await conn.fetch(_HELD, [*exact, *maybe], row["id"])}
        free = [c for c in exact if c not in held]
        doubts = [
            f"CALLR lists {c}, to the number, whose text may be this one's as CALLR converted it"
            for c in maybe
            if c not in held
        ]
        return (free[0] if free else None), doubts

    async def _found(self, row: Record, sms_id: str, how: str) -> None:
        await self._write(
            row,
            row["seq"] + 1,
            Step.ACCEPTED,
            datetime.now(UTC),
            attempt=row["attempts"],
            sms_id=sms_id,
            how=how,
            message=message_of(row),
        )
        metrics.SENDS.labels("found").inc()
        log.info("send_found", send_id=row["id"], sms_id=sms_id, how=how)

    # ------------------------------------------------------------------ steps

    async def _write(self, row: Record, seq: int, step: Step, at: datetime, **fields: Any) -> bool:
        """Store and apply the send's step `seq`; False when the send moved on without us."""
        async with self._pool.acquire() as conn:
            written = await append_step(
                conn, row["id"], seq, step, at, source=SOURCE, routing_window=self._window, **fields
            )
        if not written:
            log.info("send_taken_elsewhere", send_id=row["id"], step=step.value)
        return written


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


def _listed(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    """A listed SMS's id and text: v1's `hash` and `text`, v2's `sid` and `body.text`."""
    sms_id = obj.get("hash") or obj.get("sid")
    text = obj.get("text")
    body = obj.get("body")
    if text is None and isinstance(body, dict):
        text = body.get("text")
    return (
        str(sms_id).lower() if isinstance(sms_id, str) and sms_id else None,
        text if isinstance(text, str) else None,
    )


def _span(duration: timedelta) -> str:
    """A duration as people say it: 90 s, 15 min, 2 h."""
    seconds = duration.total_seconds()
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"
