"""Projectors at work at once, each on its own partitions of the queue: every event applied
once, each number's replies and each SMS's status changes forwarded in the order stored."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import asyncpg
import pytest

from receiver.db.engine import create_pool
from receiver.projection.projector import Projector
from receiver.projection.store import PARTS
from receiver.status import Status
from testkit.callr_events import BASE_TIME, lifecycle, mo_event, v1_event, v2_event
from testkit.support import fetch, incoming
from tests.forwarding.conftest import register
from tests.projection.test_projector import TURN_LOCK, store

NUMBERS = [f"+336100{n:05d}" for n in range(24)]
ROUNDS = 20
STEPS = (Status.CREATED, Status.PENDING, Status.SENT, Status.DELIVERED)
_PART_LOCK = 726_311_041


def load(rounds: int) -> list[bytes]:
    """Per round, a reply from each number and the next status of an SMS sent to it."""
    bodies = []
    for r in range(rounds):
        for n, number in enumerate(NUMBERS):
            bodies.append(
                mo_event(f"mo-{n}-{r}", f"MO{n:03d}{r:04d}", sender=number, text=f"reply {r}")
            )
            if r < len(STEPS):
                document = json.loads(
                    v1_event(f"mt-{n}-{r}", f"MT{n:03d}", lifecycle(*STEPS[: r + 1]))
                )
                document["data"]["to"] = number
                bodies.append(json.dumps(document).encode())
    return bodies


async def drain_with(database_url: str, projectors: int) -> list[int]:
    pools = [await create_pool(database_url, size=2, command_timeout=30) for _ in range(projectors)]
    try:
        return await asyncio.gather(
            *(Projector(pool, batch_max=20, parts_a_batch=4).drain() for pool in pools)
        )
    finally:
        for pool in pools:
            await pool.close()


@pytest.mark.parametrize("projectors", [2, 4])
async def test_projectors_at_once_keep_every_order_and_apply_each_event_once(
    database_url: str, projectors: int
) -> None:
    await register(
        database_url, user_data="42", url="http://127.0.0.1:9/", events=("replies", "status")
    )
    bodies = load(rounds=ROUNDS)
    pool = await create_pool(database_url, size=4, command_timeout=30)
    try:
        await store(pool, [incoming(body) for body in bodies])
    finally:
        await pool.close()
    taken = await drain_with(database_url, projectors)
    assert sum(taken) == len(bodies)
    assert sum(1 for n in taken if n) >= 2  # the work was shared
    assert await fetch(database_url, "SELECT 1 FROM projection_pending") == []
    replies = await fetch(
        database_url,
        "SELECT f.sms_id, m.from_number FROM forwards f JOIN messages m USING (sms_id)"
        " WHERE f.kind = 'reply' ORDER BY f.id",
    )
    assert len(replies) == ROUNDS * len(NUMBERS)  # once each
    for number in NUMBERS:
        ids = [r["sms_id"] for r in replies if r["from_number"] == number]
        assert ids == sorted(ids), number  # in the order stored (the id holds the round)
    changes = await fetch(
        database_url,
        "SELECT sms_id, status_before, status_after FROM forwards WHERE kind = 'status'"
        " ORDER BY id",
    )
    order = [s.value for s in STEPS]
    for n in range(len(NUMBERS)):
        # A batch says the change it made (steps inside one batch are one change):
        # each SMS's callbacks move forward only, and end where its reports end.
        steps = [order.index(c["status_after"]) for c in changes if c["sms_id"] == f"mt{n:03d}"]
        assert steps == sorted(set(steps)), n
        assert steps[-1] == len(STEPS) - 1, n


async def test_a_dying_projector_s_partitions_go_to_the_others(database_url: str) -> None:
    pool = await create_pool(database_url, size=4, command_timeout=30)
    try:
        await store(pool, [incoming(body) for body in load(rounds=3)])
        dying = await asyncpg.connect(database_url)
        # A projector's batch: every partition held, some rows claimed, then its
        # process gone (the connection cut, nothing committed).
        await dying.execute("BEGIN")
        assert await dying.fetchval("SELECT pg_try_advisory_xact_lock_shared($1)", TURN_LOCK)
        for part in range(PARTS):
            assert await dying.fetchval(
                "SELECT pg_try_advisory_xact_lock($1, $2)", _PART_LOCK, part
            )
        claimed = await dying.fetch(
            "DELETE FROM projection_pending WHERE id IN"
            " (SELECT id FROM projection_pending ORDER BY id LIMIT 5) RETURNING event_id"
        )
        assert len(claimed) == 5
        standing_by = asyncio.create_task(Projector(pool).drain())
        await asyncio.sleep(0.3)
        assert not standing_by.done()
        dying.terminate()
        started = asyncio.get_running_loop().time()
        total = await asyncio.wait_for(standing_by, 10)
        took_over_in = asyncio.get_running_loop().time() - started
    finally:
        await pool.close()
    assert total == len(load(rounds=3))
    assert took_over_in < 5
    assert await fetch(database_url, "SELECT 1 FROM projection_pending") == []


async def test_during_an_upgrade_the_previous_release_s_projector_works_alone(
    database_url: str,
) -> None:
    pool = await create_pool(database_url, size=4, command_timeout=30)
    old = await asyncpg.connect(database_url)
    try:
        await store(pool, [incoming(body) for body in load(rounds=2)])
        # The previous release takes the turn lock exclusively for each batch.
        await old.execute("BEGIN")
        assert await old.fetchval("SELECT pg_try_advisory_xact_lock($1)", TURN_LOCK)
        projector = Projector(pool)
        turn = await projector.project_batch()
        assert (turn.taken, turn.events) == (False, 0)
        await old.execute("COMMIT")
        assert (await projector.project_batch()).events > 0
    finally:
        await old.close()
        await pool.close()


def test_a_number_s_events_share_one_partition() -> None:
    from receiver.callr.envelope import parse_envelope
    from receiver.projection.store import part_of

    number = NUMBERS[3]
    mt = json.loads(v2_event("e1", "MTX", lifecycle(Status.CREATED)))
    mt["payload"]["to"] = number
    reply = mo_event("e2", "MOX", sender=number, at=BASE_TIME + timedelta(minutes=1))
    parts = {part_of(parse_envelope(json.dumps(mt).encode())), part_of(parse_envelope(reply))}
    assert len(parts) == 1
    spread = {part_of(parse_envelope(mo_event("e", "M", sender=n))) for n in NUMBERS}
    assert len(spread) > PARTS // 2
