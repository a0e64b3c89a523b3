"""Asking CALLR for what the webhooks missed: subscribe, reconcile, backfill.

What CALLR answers about an SMS is stored as an event of the receiver's own
(receiver.callr.own) and applied through the one way in
(receiver.projection.apply.store_and_apply) in the same transaction: a slice of a
backfill, or one reconciled SMS, is written whole or not at all. An answer that
cannot be read raises `CallrApiError` before anything of it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import structlog

from receiver import metrics
from receiver.callr.api import CallrApi, CallrApiError, CallrNotFound
from receiver.callr.envelope import Envelope
from receiver.callr.own import api_sms_event
from receiver.callr.sms import SmsInvalid
from receiver.db.engine import Connection, Pool, Record, asyncpg_dsn
from receiver.db.rate import SharedRate
from receiver.projection.apply import store_and_apply

log = structlog.get_logger("receiver.callr_sync")

# After this many answers that leave an SMS where it was, reconcile stops asking.
MAX_CHECKS = 7
DEFAULT_TYPES = ("sms.mt.status_update", "sms.mo")
# The advisory lock held by the process whose reconcile runs (any number, fixed).
_RECONCILE_LOCK = 7_263_110_403


def api_client(settings: Any, pool: Pool, *, sending: bool = False) -> CallrApi:
    """The CALLR API client the settings describe, at the rate shared on `pool`'s database.

    They must hold a login and password, or for `sending`, a login and password or a
    v2 API key.
    """
    if not settings.callr_api_configured and not (sending and settings.callr_api_key):
        raise CallrApiError(
            "no CALLR API credentials: set RECEIVER_CALLR_API_LOGIN and RECEIVER_CALLR_API_PASSWORD"
        )
    return CallrApi(
        settings.callr_api_url,
        settings.callr_api_login,
        settings.callr_api_password,
        api_key=settings.callr_api_key,
        limit=SharedRate(pool, settings.callr_api_rate),
        timeout=settings.callr_api_timeout,
        observe=metrics.count_callr_call,
    )


# ---------------------------------------------------------------- subscribe

_KEEP_SUBSCRIPTION = """
INSERT INTO callr_subscriptions AS s (hash, type, endpoint, answer) VALUES ($1, $2, $3, $4::jsonb)
ON CONFLICT (hash) DO UPDATE SET type = EXCLUDED.type, endpoint = EXCLUDED.endpoint,
    answer = EXCLUDED.answer
"""

_SUBSCRIPTIONS = """
SELECT hash, type, endpoint, created_at FROM callr_subscriptions ORDER BY created_at, hash
"""


async def subscribe(
    pool: Pool,
    api: CallrApi,
    *,
    url: str,
    types: Sequence[str],
    options: Mapping[str, object] | None,
) -> list[dict[str, object]]:
    """`webhooks.subscribe` for each type; each webhook CALLR makes is kept as it answers."""
    made = []
    for event_type in types:
        answer = await api.subscribe(event_type, url, options)
        hook = _without_secret(answer.value)
        async with pool.acquire() as conn:
            await conn.execute(
                _KEEP_SUBSCRIPTION, hook["hash"], event_type, url, orjson.dumps(hook).decode()
            )
        log.info("callr_subscribed", type=event_type, hash=hook["hash"])
        made.append({"hash": hook["hash"], "type": event_type, "endpoint": url})
    return made


async def subscriptions(pool: Pool) -> list[Record]:
    """The subscriptions kept, oldest first."""
    async with pool.acquire() as conn:
        return await conn.fetch(_SUBSCRIPTIONS)


def _without_secret(hook: dict[str, object]) -> dict[str, object]:
    kept = dict(hook)
    options = kept.get("options")
    if isinstance(options, dict) and options.get("hmac_secret"):
        kept["options"] = {**options, "hmac_secret": "(set: RECEIVER_CALLR_HMAC_SECRETS)"}
    return kept


# ---------------------------------------------------------------- reconcile

_CANDIDATES = """
SELECT m.sms_id FROM messages m
LEFT JOIN reconciliations r USING (sms_id)
WHERE m.direction = 'outbound' AND NOT m.status_terminal AND m.status_at < $1
  AND (r.sms_id IS NULL OR (NOT r.unknown AND r.checked_at < $1 AND r.checks < $2))
ORDER BY m.status_at, m.sms_id
LIMIT $3
"""

_CHECKED = """
INSERT INTO reconciliations AS r (sms_id, checks, checked_at, unknown, answer_status)
VALUES ($1, 1, $2, $3, $4)
ON CONFLICT (sms_id) DO UPDATE SET checks = r.checks + 1, checked_at = $2, unknown = $3,
    answer_status = COALESCE($4, r.answer_status)
"""


@dataclass(slots=True)
class ReconcileSummary:
    """What one reconcile run did."""

    candidates: list[str] = field(default_factory=list)
    changed: int = 0
    """SMS whose answer was new evidence (an event stored)."""
    unchanged: int = 0
    """SMS whose answer was stored already: CALLR says what it said last time."""
    unknown: int = 0
    """SMS that CALLR does not know: marked, never asked again."""
    failed: int = 0
    """SMS whose answer was an error of its own (a refusal, a wrong shape): counted as a
    check, so that the next runs move on to the others."""


async def reconcile(
    pool: Pool,
    api: CallrApi | None,
    *,
    older_than: timedelta,
    limit: int,
    routing_window: timedelta,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ReconcileSummary:
    """Ask CALLR for the outbound SMS stuck in a non-final status for longer than `older_than`.

    Each answer is stored and applied in a transaction of its own. An error about one
    SMS (CALLR refuses the call, answers another shape) counts as a check of it and the
    run goes on. An error of CALLR's as a whole stops the run (what was reconciled
    before it stays): out of reach, failing or throttling, after counting as a check
    of the SMS asked (the next run starts with the others); credentials refused,
    without.
    """
    now = now or datetime.now(UTC)
    cutoff = now - older_than
    summary = ReconcileSummary()
    async with pool.acquire() as conn:
        rows = await conn.fetch(_CANDIDATES, cutoff, MAX_CHECKS, limit)
    summary.candidates = [row["sms_id"] for row in rows]
    if dry_run:
        return summary
    if api is None:
        raise ValueError("reconcile asks CALLR: it needs a client unless dry_run")
    for sms_id in summary.candidates:
        try:
            answer = await api.sms(sms_id)
        except CallrNotFound:
            async with pool.acquire() as conn:
                await conn.execute(_CHECKED, sms_id, now, True, None)
            summary.unknown += 1
            metrics.RECONCILED.labels("unknown").inc()
            log.warning("reconcile_unknown_sms", sms_id=sms_id)
            continue
        except CallrApiError as error:
            if error.outcome != "unauthorized":
                # Counted as a check, so that the next runs start with the others.
                await _failed_check(pool, sms_id, now, summary, str(error))
            if not error.about_the_call:
                raise
            continue
        try:
            envelope = _read_sms(answer.raw, "GET /sms/<hash>", quiet=False)
            assert envelope.sms is not None
            if envelope.sms.sms_id != sms_id:
                raise CallrApiError(
                    f"CALLR answered GET /sms/<hash> for {sms_id}"
                    f" with another SMS ({envelope.sms.sms_id})"
                )
        except CallrApiError as error:
            await _failed_check(pool, sms_id, now, summary, str(error))
            continue
        async with pool.acquire() as conn, conn.transaction():
            new = await store_and_apply(
                conn,
                [(envelope, answer.raw)],
                source="reconcile: GET /sms/<hash>",
                routing_window=routing_window,
            )
            await conn.execute(_CHECKED, sms_id, now, False, envelope.sms.provider_status)
        if new:
            summary.changed += 1
        else:
            summary.unchanged += 1
        metrics.RECONCILED.labels("changed" if new else "unchanged").inc()
    return summary


async def _failed_check(
    pool: Pool, sms_id: str, now: datetime, summary: ReconcileSummary, error: str
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(_CHECKED, sms_id, now, False, None)
    summary.failed += 1
    metrics.RECONCILED.labels("failed").inc()
    log.warning("reconcile_sms_failed", sms_id=sms_id, error=error)


@contextlib.asynccontextmanager
async def reconcile_turn(pool: Pool, direct: str | None = None) -> AsyncIterator[bool]:
    """Whether this process is the one to reconcile now (one at a time across processes).

    The lock is a session's, held for the whole reconcile: on a connection of the pool,
    or on one of its own to `direct` when the pool's are a pooler's (receiver.db.engine's
    `POOLED`), where a session lock would not hold.
    """
    async with contextlib.AsyncExitStack() as held:
        conn: Connection
        if direct is None:
            conn = await held.enter_async_context(pool.acquire())
        else:
            conn = await asyncpg.connect(asyncpg_dsn(direct), timeout=10)
            held.push_async_callback(conn.close)
        taken = await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RECONCILE_LOCK)
        try:
            yield bool(taken)
        finally:
            if taken:
                await conn.execute("SELECT pg_advisory_unlock($1)", _RECONCILE_LOCK)


async def reconcile_forever(pool: Pool, settings: Any) -> None:
    """serve's and worker's task: a reconcile every RECONCILE_INTERVAL, errors logged.

    The first a minute after the start (or sooner, for a shorter interval).
    """
    await asyncio.sleep(min(60.0, settings.reconcile_interval.total_seconds()))
    while True:
        try:
            async with reconcile_turn(pool, settings.direct_database_url) as mine:
                if mine:
                    async with api_client(settings, pool) as api:
                        summary = await reconcile(
                            pool,
                            api,
                            older_than=settings.reconcile_after,
                            limit=settings.reconcile_limit,
                            routing_window=timedelta(hours=settings.routing_window_hours),
                        )
                    log.info(
                        "reconciled",
                        asked=len(summary.candidates),
                        changed=summary.changed,
                        unchanged=summary.unchanged,
                        unknown=summary.unknown,
                        failed=summary.failed,
                    )
        except CallrApiError as error:
            log.warning("reconcile_failed", error=str(error))
        except Exception as error:  # the loop outlives a database outage
            log.error("reconcile_failed", error=repr(error))
        await asyncio.sleep(settings.reconcile_interval.total_seconds())


# ---------------------------------------------------------------- backfill


@dataclass(slots=True)
class BackfillSummary:
    """What one backfill did."""

    listed: int = 0
    new: int = 0


def slices(since: datetime, until: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    """[since, until) cut into windows of `size`, the last one shorter."""
    out = []
    start = since
    while start < until:
        end = min(start + size, until)
        out.append((start, end))
        start = end
    return out


async def backfill(
    pool: Pool,
    api: CallrApi,
    *,
    since: datetime,
    until: datetime,
    directions: Sequence[str] = ("OUT", "IN"),
    size: timedelta = timedelta(hours=1),
    forward: bool = True,
    routing_window: timedelta,
    advance: Callable[[int], None] = lambda n: None,
) -> BackfillSummary:
    """Store and apply every SMS CALLR lists for the window, one slice a transaction.

    Each slice is read whole from `sms.search`, every page; a slice with more pages
    than a search reads is cut in two until each half is read whole."""
    summary = BackfillSummary()
    for start, end in slices(since, until, size):
        for direction in directions:
            await _backfill_slice(
                pool, api, summary, direction, start, end, forward, routing_window
            )
        advance(1)
    return summary


async def _backfill_slice(
    pool: Pool,
    api: CallrApi,
    summary: BackfillSummary,
    direction: str,
    start: datetime,
    end: datetime,
    forward: bool,
    routing_window: timedelta,
) -> None:
    # CALLR's dates are to the second, and `to` is taken to be inclusive: a slice ends
    # a second before the next one starts (an SMS on the edge is listed once; were it
    # listed twice, it would still be stored once).
    last = max(start, end - timedelta(seconds=1))
    listing = await api.search("v1", "IN" if direction == "IN" else "OUT", start, last)
    if not listing.complete:
        if end - start <= timedelta(seconds=2):
            raise CallrApiError(
                f"CALLR's list of {start:%Y-%m-%d %H:%M:%S} is not whole: {listing.why}"
            )
        middle = start + (end - start) / 2
        middle = middle.replace(microsecond=0)
        for half in ((start, middle), (middle, end)):
            await _backfill_slice(pool, api, summary, direction, *half, forward, routing_window)
        return
    label = f"sms.search (type {direction}, {start:%Y-%m-%d %H:%M:%S} to {last:%H:%M:%S})"
    events = []
    for n, obj in enumerate(listing.objects):
        body = orjson.dumps(obj)
        envelope = _read_sms(body, f"{label}, SMS {n}", quiet=not forward)
        assert envelope.sms is not None
        if (envelope.sms.direction == "inbound") != (direction == "IN"):
            raise CallrApiError(
                f"CALLR's answer to {label} lists SMS {envelope.sms.sms_id}"
                f" of the other direction ({envelope.sms.direction})"
            )
        events.append((envelope, body))
    async with pool.acquire() as conn, conn.transaction():
        summary.new += await store_and_apply(
            conn, events, source=f"backfill: {label}", routing_window=routing_window
        )
    summary.listed += len(events)


def _read_sms(body: bytes, label: str, *, quiet: bool) -> Envelope:
    try:
        return api_sms_event(body, quiet=quiet)
    except SmsInvalid as error:
        raise CallrApiError(
            f"CALLR's answer to {label} is not an SMS the receiver can read: {error}"
        ) from None
