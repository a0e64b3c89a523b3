from __future__ import annotations

import asyncio
import json
import random

import asyncpg
import httpx

from receiver.app import create_app
from receiver.projection.store import Result, store_batch
from testkit.support import example, fetch, incoming, running, until_a_lock_wait, with_fields
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

TOKEN_PATH = f"/webhooks/callr/{TEST_URL_TOKEN}"


def fifty_events() -> list[bytes]:
    """50 distinct events, half v1 status updates and half v2 inbound messages."""
    v1, v2 = example("v1-sms.mt.status_update"), example("v2.sms.inbound.received")
    return [with_fields(v1, event_id=f"v1-event-{n:02d}") for n in range(25)] + [
        with_fields(v2, id=f"v2-event-{n:02d}") for n in range(25)
    ]


def two_hundred_deliveries(seed: int) -> list[bytes]:
    """Each event four times: twice at try 0, then try 1 and try 2; shuffled."""
    deliveries = [
        with_fields(body, try_=attempt) for body in fifty_events() for attempt in (0, 0, 1, 2)
    ]
    random.Random(seed).shuffle(deliveries)
    return deliveries


async def post_all(client: httpx.AsyncClient, bodies: list[bytes]) -> list[httpx.Response]:
    headers = {"content-type": "application/json"}
    return await asyncio.gather(
        *(client.post(TOKEN_PATH, content=body, headers=headers) for body in bodies)
    )


async def test_concurrent_repeats_and_retries_store_each_event_once(
    make_settings: SettingsFactory, database_url: str
) -> None:
    async with running(create_app(make_settings())) as client:
        responses = await post_all(client, two_hundred_deliveries(seed=1))
    assert [r.status_code for r in responses] == [200] * 200
    results = [r.json()["result"] for r in responses]
    assert results.count("stored") == 50
    assert results.count("duplicate") == 150
    events = await fetch(database_url, "SELECT event_id FROM events")
    assert len(events) == 50
    deliveries = await fetch(database_url, "SELECT event_id, attempt FROM deliveries")
    assert len(deliveries) == 150
    assert len({(d["event_id"], d["attempt"]) for d in deliveries}) == 150


async def test_two_replicas_on_one_database_store_each_event_once(
    make_settings: SettingsFactory, database_url: str
) -> None:
    first_app, second_app = create_app(make_settings()), create_app(make_settings())
    async with running(first_app) as first, running(second_app) as second:
        responses = await asyncio.gather(
            post_all(first, two_hundred_deliveries(seed=2)),
            post_all(second, two_hundred_deliveries(seed=3)),
        )
    answers = [r for half in responses for r in half]
    assert [r.status_code for r in answers] == [200] * 400
    assert [r.json()["result"] for r in answers].count("stored") == 50
    assert len(await fetch(database_url, "SELECT 1 FROM events")) == 50
    assert len(await fetch(database_url, "SELECT 1 FROM deliveries")) == 150
    conflicts = await fetch(database_url, "SELECT 1 FROM deliveries WHERE conflict")
    assert conflicts == []


async def test_each_event_keeps_the_body_of_its_first_arrival(
    make_settings: SettingsFactory, database_url: str
) -> None:
    async with running(create_app(make_settings())) as client:
        await post_all(client, two_hundred_deliveries(seed=4))
    rows = await fetch(database_url, "SELECT body FROM events")
    for row in rows:
        assert json.loads(row["body"])["try"] in (0, 1, 2)
    # Every stored body is one of the bodies that was sent, byte for byte.
    sent = set(two_hundred_deliveries(seed=4))
    assert all(row["body"] in sent for row in rows)


async def test_an_event_committed_while_a_batch_waits_for_it_keeps_that_batchs_delivery(
    database_url: str,
) -> None:
    """The second batch's insert waits for the first's, whose event its snapshot misses."""
    body = example("v2.sms.outbound.updated")
    retry = with_fields(body, try_=1)
    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        first_transaction = first.transaction()
        await first_transaction.start()
        (stored,) = await store_batch(first, [incoming(body)])
        assert stored.result is Result.STORED
        # Sure to start (and take its snapshot) before the first batch commits.
        async with second.transaction():
            waiting = asyncio.create_task(store_batch(second, [incoming(retry)]))
            await until_a_lock_wait(first, second.get_server_pid())
            await first_transaction.commit()
            (outcome,) = await waiting
    finally:
        await first.close()
        await second.close()
    assert (outcome.result, outcome.new_delivery, outcome.conflict) == (
        Result.DUPLICATE,
        True,
        False,
    )
    deliveries = await fetch(database_url, "SELECT attempt, conflict FROM deliveries")
    assert sorted((d["attempt"], d["conflict"]) for d in deliveries) == [(0, False), (1, False)]
