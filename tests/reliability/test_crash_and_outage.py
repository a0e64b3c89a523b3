"""Nothing acknowledged is lost: a receiver killed mid-load, a database that goes away, SIGTERM.

The client is `receiver simulate`'s sender, which behaves like CALLR: every delivery
not answered 2xx is sent again with a higher `try`, until it is.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from receiver.simulate import Mix, Plan, Report, Signer, simulate
from testkit.support import pending, until_projected
from tests.reliability.conftest import SECRET, OwnPostgres, Receiver
from tests.simulate.test_simulate import holdings

pytestmark = pytest.mark.reliability

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


async def send(receiver: Receiver, plan: Plan, **options: Any) -> Report:
    options = {"concurrency": 16, "duration": 120, "max_tries": 15, **options}
    return await simulate(receiver.webhook, plan, signer=Signer(SECRET), **options)


async def state(url: str) -> dict[str, list[Any]]:
    """Everything that must not depend on how the events arrived."""
    conn = await asyncpg.connect(url)
    try:
        return {
            "messages": await conn.fetch(
                "SELECT sms_id, direction, status, provider_status, status_at, created_at,"
                " sent_at, delivered_at, user_data, network, anomaly, unexplained"
                " FROM messages ORDER BY sms_id"
            ),
            "transitions": await conn.fetch(
                "SELECT sms_id, before, after, at, derived FROM transitions ORDER BY 1, 2, 3, 4"
            ),
            "observations": await conn.fetch(
                "SELECT sms_id, status, at FROM observations ORDER BY 1, 2, 3"
            ),
            "events": await conn.fetch("SELECT event_id, state FROM events ORDER BY 1"),
            "forwards": await conn.fetch(
                "SELECT event_id, sms_id, rule, state FROM forwards ORDER BY 1"
            ),
        }
    finally:
        await conn.close()


async def clean_run(own_postgres: OwnPostgres, receiver_factory: Any, plan: Plan) -> Any:
    """The same traffic into a fresh database, with nothing going wrong."""
    admin = await asyncpg.connect(own_postgres.server.get_uri("postgres"))
    try:
        await admin.execute("CREATE DATABASE clean")
    finally:
        await admin.close()
    url = own_postgres.server.get_uri("clean")
    from receiver.db import migrate

    await asyncio.to_thread(migrate.upgrade, url)
    receiver = receiver_factory(url)
    await asyncio.to_thread(receiver.start)
    report = await send(receiver, plan)
    assert report.unacknowledged == 0
    await until_projected(url, seconds=120)
    return await state(url)


async def inbound_events(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM events WHERE state = 'processed'"
                " AND type IN ('sms.mo', 'v2.sms.inbound.received')"
            )
        )
    finally:
        await conn.close()


async def test_killed_twice_mid_load_nothing_acknowledged_is_lost(
    own_postgres: OwnPostgres, receiver_factory: Any
) -> None:
    # No projector at first: the first kill finds events stored and not projected.
    # Then a projector in batches of 5, catching up while the load goes on: the
    # second kill cuts its batch as well as requests and the writer's batch.
    receiver = receiver_factory(own_postgres.url, RECEIVER_PROJECTOR="false")
    await asyncio.to_thread(receiver.start)
    plan = Plan(1500, Mix(), seed=21, start=START)
    behind_at_kills: list[int] = []

    async def chaos() -> list[float]:
        downtimes = []
        for _ in range(2):
            await asyncio.sleep(1.5)
            behind_at_kills.append(await pending(own_postgres.url))
            receiver.signal(signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.to_thread(receiver.exit_code, 10)
            receiver.env.update(RECEIVER_PROJECTOR="true", RECEIVER_PROJECTOR_BATCH_MAX="5")
            await asyncio.to_thread(receiver.start)
            downtimes.append(time.monotonic() - killed)
        return downtimes

    report, downtimes = await asyncio.gather(send(receiver, plan), chaos())
    summary = report.summary()
    assert receiver.starts == 3
    assert summary["unacknowledged"] == 0, summary
    # The kills were felt: connections broke and deliveries were sent again (a 400 is
    # the simulator's invalid events, refused and kept).
    assert set(summary["answers"]) - {"200", "400"}, summary["answers"]
    assert "500" not in summary["answers"]
    assert behind_at_kills[0] > 0, behind_at_kills
    # The restarted receiver's projector catches up: every event stored exactly once
    # (events are keyed by id) and applied once, every message right, every MO
    # forwarded once, no history step twice: what a clean run gives.
    await until_projected(own_postgres.url, seconds=120)
    assert await holdings(own_postgres.url) == summary["expected"]
    assert summary["expected"]["events"] > 4000
    crashed = await state(own_postgres.url)
    clean = await clean_run(own_postgres, receiver_factory, Plan(1500, Mix(), seed=21, start=START))
    assert crashed == clean
    forwarded = [f["event_id"] for f in crashed["forwards"]]
    assert len(forwarded) == len(set(forwarded)) == await inbound_events(own_postgres.url) > 0
    print(
        f"crash: {summary['requests']} requests, down {downtimes}, {summary['answers']},"
        f" pending at the kills {behind_at_kills}"
    )


async def test_a_database_outage_gets_503s_then_recovers_with_nothing_lost(
    own_postgres: OwnPostgres, receiver_factory: Any
) -> None:
    receiver = receiver_factory(own_postgres.url, RECEIVER_ACK_TIMEOUT="2")
    await asyncio.to_thread(receiver.start)
    plan = Plan(1500, Mix(), seed=22, start=START)
    recoveries: list[float] = []

    async def outages() -> None:
        # Stopped for 4 s; then restarted at once, the hard way, with batches in flight.
        for mode, down in (("fast", 4.0), ("immediate", 0.0)):
            await asyncio.sleep(1.5)
            await asyncio.to_thread(own_postgres.stop, mode)
            await asyncio.sleep(down)
            await asyncio.to_thread(own_postgres.start)
            recoveries.append(await asyncio.to_thread(receiver.wait, "/readyz", 5.0))

    report, _ = await asyncio.gather(send(receiver, plan), outages())
    summary = report.summary()
    assert summary["unacknowledged"] == 0, summary
    answers = summary["answers"]
    assert answers.get("503", 0) > 0, answers
    # Every refusal was a 503 with Retry-After (or the 400 of an invalid event, kept):
    # no 500, no hang.
    assert set(answers) <= {"200", "400", "503"}, answers
    assert max(report.latencies) < 2 + 3, max(report.latencies)
    assert max(recoveries) < 5, recoveries
    await until_projected(own_postgres.url, seconds=120)
    assert await holdings(own_postgres.url) == summary["expected"]
    print(f"outage: answers {answers}, recovered in {recoveries}")


async def test_sigterm_mid_load_answers_what_it_took_and_exits_0(
    own_postgres: OwnPostgres, receiver_factory: Any
) -> None:
    receiver = receiver_factory(own_postgres.url)
    await asyncio.to_thread(receiver.start)
    plan = Plan(3000, Mix(), seed=23, start=START)

    async def stop() -> tuple[int, float]:
        await asyncio.sleep(2.0)
        receiver.signal(signal.SIGTERM)
        asked = time.monotonic()
        code = await asyncio.to_thread(receiver.exit_code, 30)
        return code, time.monotonic() - asked

    # One try each: what was acknowledged is exactly what the receiver said it took.
    report, (code, took) = await asyncio.gather(send(receiver, plan, max_tries=1), stop())
    assert code == 0
    assert took < 10, took
    assert report.acknowledged, "nothing was acknowledged before the stop"
    conn = await asyncpg.connect(own_postgres.url)
    try:
        stored = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM events")}
    finally:
        await conn.close()
    assert report.acknowledged <= stored
    print(f"sigterm: exited {code} in {took:.2f} s; {len(report.acknowledged)} acknowledged")
