"""The lost answer of a send: CALLR may have made the SMS, or not. Its lists are
searched (paged, whole or said not to be) for an SMS to the same number with the
same user_data and text, in the send's time window; found, the send is accepted;
absent from a whole list after `lookup_after`, it was not sent; otherwise it stays
unknown for a person to settle after `unknown_after`. Never sent twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from receiver import metrics
from receiver.callr.api import CallrApi, CallrApiError, Listing
from receiver.callr.gsm import TextMatcher, text_matcher
from receiver.callr.sends import Step
from receiver.db.engine import Pool, Record
from receiver.sending.requests import append_step, message_of

log = structlog.get_logger("receiver.sender")

SOURCE = "sender"
# The send's next look, put off: a claim on its step until then (a step written
# meanwhile moves the send on, and the claim holds nothing).
LATER = """
INSERT INTO send_claims AS c (send_id, until, seq) VALUES ($1, $2, $3)
ON CONFLICT (send_id) DO UPDATE SET seq = EXCLUDED.seq, until = EXCLUDED.until
"""
_CLOCK_SKEW = timedelta(seconds=60)

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


class LostAnswers:
    """What became of a send whose answer was lost: looked for in CALLR's lists, found,
    concluded sent or not, or left unknown; and each step of a send written."""

    def __init__(
        self,
        pool: Pool,
        *,
        can_list: frozenset[str],
        lookup_after: timedelta,
        unknown_after: timedelta,
        routing_window: timedelta,
    ) -> None:
        self._pool = pool
        self._can_list = can_list
        """The APIs whose sends can be looked for: v1 with the login, v2 with the key."""
        self._lookup_after = lookup_after
        self._unknown_after = unknown_after
        self._window = routing_window

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
                await conn.execute(LATER, row["id"], now + _TWIN_PAUSE, row["seq"])
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
            await conn.execute(LATER, row["id"], again, row["seq"])

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

    async def _write(self, row: Record, seq: int, step: Step, at: datetime, **fields: Any) -> bool:
        """Store and apply the send's step `seq`; False when the send moved on without us."""
        async with self._pool.acquire() as conn:
            written = await append_step(
                conn, row["id"], seq, step, at, source=SOURCE, routing_window=self._window, **fields
            )
        if not written:
            log.info("send_taken_elsewhere", send_id=row["id"], step=step.value)
        return written


def _listed(obj: dict[str, object]) -> tuple[str | None, str | None]:
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
