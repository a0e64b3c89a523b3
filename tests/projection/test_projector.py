"""The projector: every stored event applied exactly once, behind the answer to CALLR."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from receiver.db.engine import create_pool
from receiver.forwarding.routing import route
from receiver.ingest.writer import GroupCommitWriter
from receiver.projection.projector import Projector
from receiver.projection.records import project
from receiver.projection.store import Incoming, Outcome, Result, store_batch, stored_reports
from receiver.reports import records
from receiver.status import Status
from testkit.callr_events import lifecycle, mo_event, v1_event, v2_event
from testkit.support import fetch, incoming, until_projected

# The projectors' advisory lock: whoever holds it is the projector at work.
TURN_LOCK = 7_263_110_402
C, P, S, D, F = Status.CREATED, Status.PENDING, Status.SENT, Status.DELIVERED, Status.FAILED

# What must come out the same however the events were projected.
STATE = {
    "messages": "SELECT sms_id, direction, status, provider_status, status_at, created_at,"
    " sent_at, delivered_at, user_data, anomaly, unexplained FROM messages ORDER BY sms_id",
    "transitions": "SELECT sms_id, before, after, at, derived FROM transitions ORDER BY 1, 2, 3, 4",
    "observations": "SELECT sms_id, status, at FROM observations ORDER BY 1, 2, 3",
    "forwards": "SELECT event_id, sms_id, rule, state FROM forwards ORDER BY event_id",
    "events": "SELECT event_id, state FROM events ORDER BY event_id",
}


async def state(url: str) -> dict[str, list[dict[str, Any]]]:
    return {name: await fetch(url, sql) for name, sql in STATE.items()}


def traffic(count: int) -> list[bytes]:
    """`count` SMS: outbound ones reported three times (v1 and v2), and some replies."""
    bodies = []
    for n in range(count):
        sms_id = f"SMS{n:05d}"
        if n % 5 == 0:
            bodies.append(mo_event(f"mo-{n}", sms_id, sender=f"+3361000{n % 7:04d}"))
            continue
        end = F if n % 3 == 0 else D
        bodies += [
            v1_event(f"v1-{n}-a", sms_id, lifecycle(C, P)),
            v2_event(f"v2-{n}-b", sms_id, lifecycle(C, P, S)),
            v1_event(f"v1-{n}-c", sms_id, lifecycle(C, P, S, end), with_history=n % 2 == 0),
        ]
    return bodies


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    pool = await create_pool(database_url, size=4, command_timeout=30)
    yield pool
    await pool.close()


async def store(pool: Any, items: Sequence[Incoming]) -> None:
    """The answer path alone: a writer with no projector behind it."""
    writer = GroupCommitWriter(pool, batch_max=100, concurrency=1, queue_max=10_000)
    await writer.start()
    try:
        outcomes = await asyncio.gather(*(writer.submit(item) for item in items))
    finally:
        await writer.stop()
    assert {o.result for o in outcomes} <= {Result.STORED, Result.DUPLICATE}


async def test_the_answer_path_leaves_records_and_forwards_to_the_projector(
    pool: Any, database_url: str
) -> None:
    mt = v1_event("mt-1", "MT1", lifecycle(C, P, S))
    mo = mo_event("mo-1", "MO1", sender="+33611111111")
    await store(pool, [incoming(mt), incoming(mo), incoming(mo)])  # the MO twice

    assert len(await fetch(database_url, "SELECT 1 FROM events")) == 2
    pending = await fetch(database_url, "SELECT event_id FROM projection_pending ORDER BY id")
    assert sorted(p["event_id"] for p in pending) == ["mo-1", "mt-1"]
    assert await fetch(database_url, "SELECT 1 FROM messages") == []
    assert await fetch(database_url, "SELECT 1 FROM forwards") == []

    assert await Projector(pool).drain() == 2
    messages = await fetch(database_url, "SELECT sms_id, status FROM messages ORDER BY 1")
    assert messages == [
        {"sms_id": "mo1", "status": "delivered"},
        {"sms_id": "mt1", "status": "sent"},
    ]
    (forward,) = await fetch(database_url, "SELECT event_id, rule FROM forwards")
    assert forward == {"event_id": "mo-1", "rule": "unrouted"}
    assert await fetch(database_url, "SELECT 1 FROM projection_pending") == []
    assert await Projector(pool).drain() == 0


async def test_two_projectors_under_load_apply_every_event_once(
    pool: Any, database_url: str, another_database_url: str
) -> None:
    bodies = traffic(300)
    applied_before = counter("receiver_projected_events_total")
    other = await create_pool(database_url, size=4, command_timeout=30)
    projectors = [
        Projector(pool, database_url, batch_max=40, poll_interval=0.05),
        Projector(other, database_url, batch_max=40, poll_interval=0.05),
    ]
    running = [asyncio.create_task(p.run()) for p in projectors]
    try:
        # In bursts, so that the projectors work while events keep arriving.
        for start in range(0, len(bodies), 60):
            await store(pool, [incoming(b) for b in bodies[start : start + 60]])
        await until_projected(database_url)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await other.close()
    assert counter("receiver_projected_events_total") - applied_before == len(bodies)

    clean = await create_pool(another_database_url, size=2, command_timeout=30)
    try:
        await store(clean, [incoming(b) for b in bodies])
        assert await Projector(clean, batch_max=len(bodies)).drain() == len(bodies)
    finally:
        await clean.close()
    projected, expected = await state(database_url), await state(another_database_url)
    assert projected == expected
    assert len(expected["forwards"]) == 60
    assert len(expected["messages"]) == 300


async def test_a_poisoned_event_is_kept_invalid_and_never_blocks_the_others(
    pool: Any, database_url: str
) -> None:
    good = [mo_event(f"good-{n}", f"GOOD{n}", sender="+33600000000") for n in range(9)]
    poison = mo_event("poison", "POISON", sender="+33600000001")
    failed_before = counter("receiver_projection_failed_events_total")
    await store(pool, [incoming(b) for b in [*good[:4], poison, *good[4:]]])
    # What the parser let through before its fields were bounded: a user_data of 6 KB
    # (random: it does not compress), too large for an index row of the message. The
    # projector applies what its process's writer parsed, so it gets this report as it
    # would have then.
    projector = Projector(pool, batch_max=100)
    (report,) = records(stored_reports([incoming(poison)], [_stored("poison")]))
    large = secrets.token_urlsafe(4500)
    projector.stored([replace(report, sms=report.sms._replace(user_data=large))])

    # Ten taken off the queue: nine applied, one kept as invalid.
    assert await projector.drain() == 10
    messages = await fetch(database_url, "SELECT sms_id FROM messages ORDER BY 1")
    assert [m["sms_id"] for m in messages] == [f"good{n}" for n in range(9)]
    assert len(await fetch(database_url, "SELECT 1 FROM forwards")) == 9
    (kept,) = await fetch(
        database_url, "SELECT state, reason, body FROM events WHERE event_id = 'poison'"
    )
    assert kept["state"] == "invalid"
    assert kept["reason"].startswith("the event could not be applied (54000): index row")
    assert kept["body"] == poison
    assert await fetch(database_url, "SELECT 1 FROM projection_pending") == []
    assert counter("receiver_projection_failed_events_total") - failed_before == 1


def _stored(event_id: str) -> Outcome:
    return Outcome(result=Result.STORED, event_id=event_id, new_delivery=True, conflict=False)


async def test_a_batch_cut_short_by_a_dying_projector_is_taken_by_the_next(
    pool: Any, database_url: str
) -> None:
    await store(pool, [incoming(b) for b in traffic(10)])
    dying = await asyncpg.connect(database_url)
    # A projector's transaction: its turn taken, rows claimed, then the process is
    # gone (its connection cut, nothing committed).
    await dying.execute("BEGIN")
    assert await dying.fetchval("SELECT pg_try_advisory_xact_lock($1)", TURN_LOCK)
    claimed = await dying.fetch(
        "DELETE FROM projection_pending WHERE id IN"
        " (SELECT id FROM projection_pending ORDER BY id LIMIT 5 FOR UPDATE) RETURNING event_id"
    )
    assert len(claimed) == 5
    standing_by = asyncio.create_task(Projector(pool).drain())
    await asyncio.sleep(0.3)
    assert not standing_by.done()
    dying.terminate()
    assert await asyncio.wait_for(standing_by, 10) == 26
    assert len(await fetch(database_url, "SELECT 1 FROM messages")) == 10


async def test_a_projector_wakes_on_another_process_commit(pool: Any, database_url: str) -> None:
    # Polling once a minute: only the NOTIFY of the writer's commit can wake it in time.
    projector = Projector(pool, database_url, poll_interval=60)
    task = asyncio.create_task(projector.run())
    try:
        await asyncio.sleep(0.5)  # listening, and done with what was there at start
        await store(pool, [incoming(mo_event("mo-w", "MOW", sender="+33600000002"))])
        await until_projected(database_url, seconds=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(await fetch(database_url, "SELECT 1 FROM forwards")) == 1


async def old_release_ingest(pool: Any, items: Sequence[Incoming]) -> None:
    """What the release before the projector did: store, project and route in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        outcomes = await store_batch(conn, items, pending=False)
        reports = records(stored_reports(items, outcomes))
        await project(conn, reports)
        await route(conn, reports, window=timedelta(days=7))


async def test_old_and_new_receivers_share_one_database_during_a_rolling_upgrade(
    pool: Any, database_url: str, another_database_url: str
) -> None:
    bodies = traffic(120)
    # Half the events through each release, interleaved, several SMS reported by both;
    # some events reach both (CALLR's retries land on either).
    old, new = bodies[::2], bodies[1::2]
    projector = Projector(pool, database_url, batch_max=25, poll_interval=0.05)
    task = asyncio.create_task(projector.run())
    try:
        for start in range(0, len(bodies), 30):
            await asyncio.gather(
                old_release_ingest(pool, [incoming(b) for b in old[start // 2 : start // 2 + 15]]),
                store(pool, [incoming(b) for b in new[start // 2 : start // 2 + 15]]),
            )
        await asyncio.gather(
            old_release_ingest(pool, [incoming(b) for b in new[:10]]),
            store(pool, [incoming(b) for b in old[:10]]),
        )
        await until_projected(database_url)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    clean = await create_pool(another_database_url, size=2, command_timeout=30)
    try:
        await store(clean, [incoming(b) for b in bodies])
        await Projector(clean).drain()
    finally:
        await clean.close()
    assert await state(database_url) == await state(another_database_url)


async def test_a_projector_woken_as_it_is_cancelled_stops(pool: Any) -> None:
    # The wake and the cancellation land in one turn of the loop: asyncio.wait_for on
    # Python 3.11 returned the wake's result and dropped the cancellation, so the
    # projector ran on and a shutdown waited for it in vain.
    projector = Projector(pool, poll_interval=30)
    running = asyncio.create_task(projector.run())
    await asyncio.sleep(0.3)  # in its wait: nothing is pending
    projector.wake()
    running.cancel()
    done, _ = await asyncio.wait({running}, timeout=2)
    assert done == {running}
    assert running.cancelled()


async def test_a_database_away_is_tried_again_with_a_growing_pause_and_said_once(
    tmp_path: Any,
) -> None:
    # A pool to a database that is not there: every batch fails for availability.
    away = await create_pool(
        f"postgresql://nobody@/receiver?host={tmp_path}", size=1, command_timeout=1
    )
    projector = Projector(away, poll_interval=0.05)
    with capture_logs() as logs:
        running = asyncio.create_task(projector.run())
        await asyncio.sleep(2.0)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    await away.close()
    said = [entry for entry in logs if entry["event"] == "projector_database_unavailable"]
    # Tried at 0, 0.5, 1.5 s (pauses of 0.5 then 1 s), said once, without a traceback.
    assert len(said) == 1
    assert said[0]["failures"] == 1
    assert "exc_info" not in said[0]
    # Without the pause it would have tried some 40 times at its 0.05 s poll.
    assert 2 <= projector._failures.count <= 3
