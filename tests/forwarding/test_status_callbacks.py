"""Status callbacks: the team that sent an SMS hears of each change of its status, once, forward."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from standardwebhooks.webhooks import Webhook

from receiver.app import create_app
from receiver.db.engine import create_pool
from receiver.forwarding.signing import new_secret
from receiver.replay import rebuild
from receiver.status import Status
from testkit.callr_events import lifecycle, mo_event, v1_event, v2_event
from testkit.handler_server import HandlerServer, queue_status_callbacks, wait_for
from testkit.support import fetch, running, until_projected, with_fields
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.forwarding.conftest import FAST, register

TOKEN_PATH = f"/webhooks/callr/{TEST_URL_TOKEN}"
C, P, S, D = Status.CREATED, Status.PENDING, Status.SENT, Status.DELIVERED
STEPS = lifecycle(C, P, S, D)


async def send(client: httpx.AsyncClient, *bodies: bytes) -> None:
    for body in bodies:
        response = await client.post(TOKEN_PATH, content=body)
        assert response.status_code == 200, response.text
        await until_projected(client)


def changes(handler: HandlerServer, path: str) -> list[tuple[str | None, str]]:
    return [(r.json["change"]["before"], r.json["change"]["after"]) for r in handler.on(path)]


async def settled(database: str) -> None:
    """Until no forward is pending or in flight."""
    for _ in range(500):
        rows = await fetch(
            database, "SELECT count(*) AS n FROM forwards WHERE state IN ('pending', 'in_flight')"
        )
        if rows[0]["n"] == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("forwards still pending")


async def test_each_change_once_in_order_whatever_repeats_and_retries(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    await register(database_url, user_data="42", url=handler.url("/s"), events=("status",))
    for n in (1, 2, 3):
        body = v1_event(f"e{n}", "ONE", STEPS[: n + 1])
        await send(client, body, body, with_fields(body, try_=1))
    await settled(database_url)
    assert changes(handler, "/s") == [(None, "pending"), ("pending", "sent"), ("sent", "delivered")]
    ids = [r.headers["webhook-id"] for r in handler.on("/s")]
    assert len(set(ids)) == 3
    last = handler.on("/s")[-1].json
    assert last["type"] == "sms.status"
    assert last["user_data"] == "42"
    assert last["sms"]["id"] == "one"
    assert last["sms"]["status"] == "delivered"
    assert [(s["before"], s["after"]) for s in last["sms"]["history"]] == [
        ("created", "pending"),
        ("pending", "sent"),
        ("sent", "delivered"),
    ]


async def test_shuffled_reports_announce_only_forward_changes(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    await register(database_url, user_data="42", url=handler.url("/s"), events=("status",))
    await send(
        client,
        v1_event("e2", "TWO", STEPS[:3]),  # sent
        v1_event("e1", "TWO", STEPS[:2]),  # pending, older: nothing
        v1_event("e3", "TWO", STEPS),  # delivered
        v2_event("e4", "TWO", STEPS[:3]),  # sent again, late: nothing
    )
    await settled(database_url)
    assert changes(handler, "/s") == [(None, "sent"), ("sent", "delivered")]


async def test_the_terminal_filter_hears_only_of_the_end(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    await register(
        database_url,
        user_data="42",
        url=handler.url("/t"),
        events=("status",),
        status_filter="terminal",
    )
    for n in (1, 2, 3):
        await send(client, v1_event(f"e{n}", "THREE", STEPS[: n + 1]))
    await settled(database_url)
    assert changes(handler, "/t") == [("sent", "delivered")]


async def test_a_prefix_handler_hears_of_its_team_only_and_replies_stay_with_repliers(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    await register(database_url, user_data="booking-*", url=handler.url("/b"), events=("status",))
    await register(database_url, user_data=None, default=True, url=handler.url("/d"))
    await send(
        client,
        v1_event("b1", "BOOK", STEPS[:3], user_data="booking-7"),
        v1_event("p1", "PROMO", STEPS[:3], user_data="promo-1"),
        mo_event("mo1", "MO1", sender="+33600000000", user_data="booking-7"),
    )
    await settled(database_url)
    assert [r.json["sms"]["id"] for r in handler.on("/b")] == ["book"]
    # The default handler subscribed to replies only: the MO, and no status news.
    assert [r.json["event_id"] for r in handler.on("/d")] == ["mo1"]


async def test_a_handler_down_then_back_hears_everything_in_order(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    handler.scripts["/s"] = lambda n: (503, 0.0) if n <= 4 else (200, 0.0)
    await register(database_url, user_data="42", url=handler.url("/s"), events=("status",))
    for n in (1, 2, 3):
        await send(client, v1_event(f"e{n}", "FOUR", STEPS[: n + 1]))
    await settled(database_url)
    delivered = [r for r in handler.on("/s") if r.json is not None]
    # Every attempt of a change comes before any attempt of the next one.
    afters = [r.json["change"]["after"] for r in delivered]
    assert afters == sorted(afters, key=["pending", "sent", "delivered"].index)
    assert set(afters) == {"pending", "sent", "delivered"}
    states = await fetch(database_url, "SELECT DISTINCT state FROM forwards")
    assert states == [{"state": "done"}]


async def test_replies_flow_while_callbacks_wait_for_a_dead_handler(
    make_settings: SettingsFactory, handler: HandlerServer, database_url: str
) -> None:
    dead = await register(
        database_url, user_data="42", url="http://127.0.0.1:9/", events=("status",), timeout=1
    )
    await register(database_url, user_data="team-b", url=handler.url("/b"))
    await queue_status_callbacks(database_url, dead, 10_000)
    async with running(create_app(make_settings(**FAST))) as client:
        await asyncio.sleep(0.5)  # the dispatcher is at work on the dead handler's queue
        started = time.monotonic()
        await send(client, mo_event("mo-b", "MOB", sender="+33611111111", user_data="team-b"))
        await wait_for(lambda: len(handler.on("/b")) == 1, seconds=5)
        took = time.monotonic() - started
    assert handler.on("/b")[0].json["event_id"] == "mo-b"
    print(f"a reply behind 10,000 callbacks for a dead handler: {took * 1000:.0f} ms")


async def test_rebuild_announces_only_what_was_never_announced(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    await register(database_url, user_data="42", url=handler.url("/s"), events=("status",))
    for n in (1, 2, 3):
        await send(client, v1_event(f"e{n}", "FIVE", STEPS[: n + 1]))
    # An event stored but never projected (a lost queue row): only a rebuild applies it.
    await fetch(
        database_url,
        "INSERT INTO events (event_id, type, received_at, state, sms_id, fingerprint, body)"
        " VALUES ('lost', 'sms.mt.status_update', now(), 'processed', 'six', '\\x00', $1)",
        v1_event("lost", "SIX", STEPS[:3]),
    )
    await settled(database_url)
    assert len(handler.on("/s")) == 3
    pool = await create_pool(database_url, size=2, command_timeout=30)
    try:
        await rebuild(pool, batch=2)
        await rebuild(pool, batch=2)  # again: nothing more
    finally:
        await pool.close()
    await settled(database_url)
    # FIVE's changes were announced before: nothing again. SIX reaches sent: announced.
    assert [(r.json["sms"]["id"], r.json["change"]["after"]) for r in handler.on("/s")][3:] == [
        ("six", "sent")
    ]


async def test_the_signature_verifies_with_the_standard_webhooks_library(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    secret = new_secret()
    await register(
        database_url, user_data="42", url=handler.url("/s"), events=("status",), secret=secret
    )
    await send(client, v1_event("e1", "SIGNED", STEPS[:2]))
    await wait_for(lambda: len(handler.on("/s")) == 1)
    request = handler.on("/s")[0]
    verified = Webhook(secret).verify(request.body, request.headers)
    assert verified["change"]["after"] == "pending"
    assert request.headers["webhook-id"] == json.loads(request.body)["callback_id"]
