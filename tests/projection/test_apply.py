"""The one way in: what one event's values make the database refuse parks that event alone."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from receiver.callr.envelope import Envelope, parse_envelope
from receiver.callr.sms import Snapshot
from receiver.projection.apply import apply, caused_by_event, store_and_apply
from receiver.projection.store import store_batch, stored_reports
from receiver.reports import Report, records
from receiver.status import Status as S
from testkit.callr_events import lifecycle, mo_event, v1_event
from testkit.support import fetch, incoming

WINDOW = timedelta(days=7)
# Random, so that it does not compress: an index row of it is over PostgreSQL's 2,704 bytes.
LARGE = secrets.token_urlsafe(4500)

# Each breaks one of the database's rules with one value, as a report the parser
# would no longer make (its fields are bounded) but the projection must survive.
POISONS: dict[str, tuple[Callable[[Snapshot], Snapshot], str]] = {
    "an index row too large": (lambda sms: sms._replace(user_data=LARGE), "54000"),
    "a network too large for its index": (lambda sms: sms._replace(network=LARGE), "54000"),
    "a NUL in a text": (lambda sms: sms._replace(text="a\x00b"), "22P05"),
    "a number out of the column's range": (lambda sms: sms._replace(parts=2**40), "22003"),
    "a constraint violated": (lambda sms: sms._replace(direction="sideways"), "23514"),
}


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def stored(conn: Any, bodies: list[bytes]) -> list[Report]:
    """The bodies stored as events (not queued), and their reports."""
    items = [incoming(body) for body in bodies]
    return records(stored_reports(items, await store_batch(conn, items, pending=False)))


@pytest.mark.parametrize("poison", sorted(POISONS))
async def test_the_event_the_database_refuses_is_parked_and_the_others_applied(
    conn: Any, database_url: str, poison: str
) -> None:
    bodies = [
        v1_event("ok-1", "OK1", lifecycle(S.CREATED, S.SENT)),
        mo_event("bad", "BAD", sender="+33600000001"),
        mo_event("ok-2", "OK2", sender="+33600000002"),
        v1_event("ok-3", "OK3", lifecycle(S.CREATED, S.SENT, S.DELIVERED)),
    ]
    reports = await stored(conn, bodies)
    change, sqlstate = POISONS[poison]
    reports[1] = replace(reports[1], sms=change(reports[1].sms))

    async with conn.transaction():
        applied = await apply(conn, reports, routing_window=WINDOW)

    assert applied.parked == ["bad"]
    messages = await fetch(database_url, "SELECT sms_id, status FROM messages ORDER BY 1")
    assert messages == [
        {"sms_id": "ok1", "status": "sent"},
        {"sms_id": "ok2", "status": "delivered"},
        {"sms_id": "ok3", "status": "delivered"},
    ]
    # The reply that was not poisoned is routed (it waits for a handler).
    forwards = await fetch(database_url, "SELECT event_id FROM forwards")
    assert forwards == [{"event_id": "ok-2"}]
    (bad,) = await fetch(database_url, "SELECT state, reason FROM events WHERE event_id = 'bad'")
    assert bad["state"] == "invalid"
    assert bad["reason"].startswith(f"the event could not be applied ({sqlstate})")


async def test_a_batch_of_poisons_among_good_events_keeps_every_good_one(
    conn: Any, database_url: str
) -> None:
    bodies = [mo_event(f"e-{n}", f"E{n}", sender=f"+3360000{n:04d}") for n in range(40)]
    reports = await stored(conn, bodies)
    for n in (0, 7, 8, 39):
        reports[n] = replace(reports[n], sms=reports[n].sms._replace(user_data=LARGE))

    async with conn.transaction():
        applied = await apply(conn, reports, routing_window=WINDOW)

    assert sorted(applied.parked) == ["e-0", "e-39", "e-7", "e-8"]
    assert len(await fetch(database_url, "SELECT 1 FROM messages")) == 36
    invalid = await fetch(database_url, "SELECT event_id FROM events WHERE state = 'invalid'")
    assert sorted(e["event_id"] for e in invalid) == ["e-0", "e-39", "e-7", "e-8"]
    # The forwards of the others, in the order the events were stored.
    forwards = await fetch(database_url, "SELECT event_id FROM forwards ORDER BY id")
    assert [f["event_id"] for f in forwards] == [
        f"e-{n}" for n in range(40) if n not in (0, 7, 8, 39)
    ]


async def test_an_error_that_is_not_an_events_fault_stops_the_whole_transaction(
    conn: Any, database_url: str
) -> None:
    reports = await stored(conn, [mo_event("m-1", "M1", sender="+33600000001")])
    await conn.execute("ALTER TABLE messages RENAME TO messages_away")
    try:
        with pytest.raises(asyncpg.exceptions.UndefinedTableError):
            async with conn.transaction():
                await apply(conn, reports, routing_window=WINDOW)
    finally:
        await conn.execute("ALTER TABLE messages_away RENAME TO messages")
    # Nothing parked: the event is the same as stored, for the next try.
    (event,) = await fetch(database_url, "SELECT state, reason FROM events")
    assert event == {"state": "processed", "reason": None}


async def test_own_events_are_stored_and_applied_in_the_callers_transaction(
    conn: Any, database_url: str
) -> None:
    parsed = parse_envelope(mo_event("own-1", "OWN1", sender="+33600000003"))
    assert isinstance(parsed, Envelope)
    body = mo_event("own-1", "OWN1", sender="+33600000003")
    async with conn.transaction():
        assert await store_and_apply(conn, [(parsed, body)], source="test", routing_window=WINDOW)
        # Again: stored already, nothing new.
        assert not await store_and_apply(
            conn, [(parsed, body)], source="test", routing_window=WINDOW
        )
    (delivery,) = await fetch(database_url, "SELECT headers FROM deliveries")
    assert '"x-receiver-source": "test"' in delivery["headers"]
    assert await fetch(database_url, "SELECT sms_id FROM messages") == [{"sms_id": "own1"}]


@pytest.mark.parametrize(
    ("error", "the_events_fault"),
    [
        (asyncpg.exceptions.ProgramLimitExceededError("index row size"), True),
        (asyncpg.exceptions.CheckViolationError("check"), True),
        (asyncpg.exceptions.UniqueViolationError("unique"), True),
        (asyncpg.exceptions.NumericValueOutOfRangeError("range"), True),
        (asyncpg.exceptions.UntranslatableCharacterError("NUL"), True),
        (asyncpg.exceptions.CardinalityViolationError("twice"), True),
        (ValueError("a value"), True),
        (TypeError("Integer exceeds 64-bit range"), True),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), False),
        (asyncpg.exceptions.SerializationError("serialization"), False),
        (asyncpg.exceptions.UndefinedTableError("no table"), False),
        (asyncpg.exceptions.QueryCanceledError("statement timeout"), False),
        (asyncpg.exceptions.AdminShutdownError("shutting down"), False),
        (asyncpg.exceptions.TooManyConnectionsError("too many"), False),
        (asyncpg.exceptions.ConnectionDoesNotExistError("gone"), False),
        (asyncpg.exceptions.LockNotAvailableError("lock"), False),
        (ConnectionRefusedError(), False),
        (TimeoutError(), False),
    ],
)
def test_which_errors_are_an_events_fault(error: BaseException, the_events_fault: bool) -> None:
    assert caused_by_event(error) is the_events_fault
