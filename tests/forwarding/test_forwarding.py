from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from receiver.app import create_app
from receiver.background import dispatcher
from receiver.db import migrate
from receiver.db.engine import create_pool
from receiver.forwarding.handlers import set_enabled
from receiver.forwarding.outbox import ForwardFilter, retry_forwards
from receiver.forwarding.routing import route_unrouted
from receiver.forwarding.signing import new_secret
from testkit.callr_events import BASE_TIME, mo_event, mt_event
from testkit.handler_server import HandlerServer, wait_for
from testkit.support import fetch, running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.forwarding.conftest import FAST, register

TOKEN_PATH = f"/webhooks/callr/{TEST_URL_TOKEN}"


async def send(client: httpx.AsyncClient, *bodies: bytes) -> None:
    for body in bodies:
        response = await client.post(TOKEN_PATH, content=body)
        assert response.status_code == 200, response.text
    await until_projected(client)


async def forwards(url: str) -> list[dict[str, Any]]:
    return await fetch(url, "SELECT * FROM forwards ORDER BY id")


async def wait_for_state(url: str, *states: str, seconds: float = 10.0) -> None:
    """Wait until every forward is in one of `states`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while {f["state"] for f in await forwards(url)} - set(states):
        assert asyncio.get_running_loop().time() < deadline, await forwards(url)
        await asyncio.sleep(0.05)


async def test_an_mo_with_its_own_user_data_reaches_that_handler(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    await register(database_url, user_data="42", url=handler.url("/team-42"))
    await register(database_url, user_data=None, default=True, url=handler.url("/default"))
    await send(client, mo_event("mo-1", "MO000001", sender="+33611111111", user_data="42"))
    await wait_for(lambda: len(handler.received) == 1)
    (request,) = handler.on("/team-42")
    payload = request.json
    assert payload["event_id"] == "mo-1"
    assert payload["event_type"] == "sms.mo"
    assert payload["rule"] == "user_data"
    assert payload["user_data"] == "42"
    assert payload["mo"]["id"] == "mo000001"
    assert (payload["mo"]["from"], payload["mo"]["to"]) == ("+33611111111", "+33644630010")
    assert payload["mo"]["text"] == "YES"
    assert payload["mt"] is None
    assert payload["event"]["event_id"] == "mo-1"  # the raw event as CALLR sent it
    assert request.headers["webhook-id"] == "mo-1"
    assert "webhook-signature" not in request.headers  # the handler has no secret
    await wait_for_state(database_url, "done")
    (forward,) = await forwards(database_url)
    assert (forward["rule"], forward["attempts"]) == ("user_data", 1)
    assert forward["delivered_at"] is not None


async def test_an_mo_without_user_data_follows_the_latest_mt_to_its_sender(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    await register(database_url, user_data="booking", url=handler.url("/booking"))
    await register(database_url, user_data="promo", url=handler.url("/promo"))
    customer = "+33622222222"
    await send(
        client,
        # The newest MT to the customer was sent from another number than the one
        # the MO reaches: the older MT from that number wins.
        mt_event("mt-1", "MT000001", to=customer, sender="+33644630010", user_data="booking"),
        mt_event(
            "mt-2",
            "MT000002",
            to=customer,
            sender="PROMO",
            user_data="promo",
            at=BASE_TIME + timedelta(minutes=5),
        ),
        mo_event("mo-2", "MO000002", sender=customer, at=BASE_TIME + timedelta(minutes=10)),
    )
    await wait_for(lambda: len(handler.received) == 1)
    (request,) = handler.on("/booking")
    assert request.json["rule"] == "recent_mt"
    assert request.json["user_data"] == "booking"
    assert request.json["mt"]["id"] == "mt000001"
    assert request.json["mt"]["user_data"] == "booking"


@pytest.mark.parametrize("b_has_a_handler", [True, False])
async def test_a_reply_two_teams_sms_could_claim_goes_to_neither(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str, b_has_a_handler: bool
) -> None:
    """Team A sends to team B's customer from B's sender, after B: the reply is B's or A's
    by who sent last, so it goes to neither; from another sender, A's own SMS is not a
    rival of B's."""
    await register(database_url, user_data="teamA-*", url=handler.url("/a"))
    if b_has_a_handler:
        await register(database_url, user_data="teamB-*", url=handler.url("/b"))
    await register(database_url, user_data=None, default=True, url=handler.url("/default"))
    customer, other = "+33655555555", "+33666666666"
    later = BASE_TIME + timedelta(minutes=5)
    await send(
        client,
        mt_event("mt-b", "MTB00001", to=customer, sender="TeamB", user_data="teamB-otp"),
        mt_event("mt-a", "MTA00001", to=customer, sender="TeamB", user_data="teamA-x", at=later),
        # Another number: A's own SMS from its own sender, B's from B's, A's is newer.
        mt_event("mt-b2", "MTB00002", to=other, sender="TeamB", user_data="teamB-1"),
        mt_event("mt-a2", "MTA00002", to=other, sender="TeamA", user_data="teamA-2", at=later),
        mo_event("mo-amb", "MOAMB001", sender=customer, at=BASE_TIME + timedelta(minutes=9)),
        mo_event("mo-own", "MOOWN001", sender=other, at=BASE_TIME + timedelta(minutes=9)),
    )
    await wait_for(lambda: len(handler.received) == 1)
    (request,) = handler.on("/a")
    assert (request.json["event_id"], request.json["rule"]) == ("mo-own", "recent_mt")
    rows = {f["event_id"]: f for f in await forwards(database_url)}
    assert (rows["mo-amb"]["state"], rows["mo-amb"]["rule"]) == ("unrouted", "ambiguous")
    assert rows["mo-amb"]["handler_id"] is None
    # A handler added later does not take it either.
    await register(database_url, user_data="teamB-otp", url=handler.url("/b-otp"))
    conn = await asyncpg.connect(database_url)
    try:
        assert await route_unrouted(conn) == 0
    finally:
        await conn.close()
    rows = {f["event_id"]: f for f in await forwards(database_url)}
    assert rows["mo-amb"]["state"] == "unrouted"
    assert len(handler.received) == 1


async def test_an_mt_older_than_the_window_is_not_followed(
    make_settings: SettingsFactory, handler: HandlerServer, database_url: str
) -> None:
    await register(database_url, user_data="booking", url=handler.url("/booking"))
    await register(database_url, user_data=None, default=True, url=handler.url("/default"))
    settings = make_settings(routing_window_hours=1, **FAST)
    async with running(create_app(settings)) as client:
        await send(
            client,
            mt_event("mt-old", "MTOLD001", to="+33633333333", user_data="booking"),
            mo_event("mo-3", "MO000003", sender="+33633333333", at=BASE_TIME + timedelta(hours=2)),
        )
        await wait_for(lambda: len(handler.received) == 1)
    assert handler.on("/default")[0].json["rule"] == "default"


async def test_an_exact_match_beats_a_prefix_and_a_longer_prefix_a_shorter(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    await register(database_url, user_data="booking-*", url=handler.url("/short"))
    await register(database_url, user_data="booking-reminder-*", url=handler.url("/long"))
    await register(database_url, user_data="booking-reminder-2", url=handler.url("/exact"))
    await send(
        client,
        mo_event("p-1", "PFX00001", sender="+1", user_data="booking-reminder-2"),
        mo_event("p-2", "PFX00002", sender="+2", user_data="booking-reminder-9"),
        mo_event("p-3", "PFX00003", sender="+3", user_data="booking-other"),
        mo_event("p-4", "PFX00004", sender="+4", user_data="bookings"),
    )
    await wait_for(lambda: len(handler.received) == 3)
    assert [r.json["event_id"] for r in handler.on("/exact")] == ["p-1"]
    assert [r.json["event_id"] for r in handler.on("/long")] == ["p-2"]
    assert [r.json["event_id"] for r in handler.on("/short")] == ["p-3"]
    states = {f["event_id"]: (f["rule"], f["state"]) for f in await forwards(database_url)}
    assert states["p-4"] == ("unrouted", "unrouted")


async def test_an_unrouted_mo_is_delivered_when_a_handler_is_added(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    await send(client, mo_event("late-1", "LATE0001", sender="+33644444444", user_data="new"))
    (waiting,) = await forwards(database_url)
    assert (waiting["state"], waiting["rule"], waiting["handler_id"]) == (
        "unrouted",
        "unrouted",
        None,
    )
    await register(database_url, user_data="new", url=handler.url("/new"))
    await wait_for(lambda: len(handler.received) == 1)
    assert handler.on("/new")[0].json["event_id"] == "late-1"
    (forward,) = await forwards(database_url)
    assert forward["rule"] == "user_data"


async def test_500_twice_then_200_is_delivered_once_after_three_attempts(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    handler.scripts["/flaky"] = lambda n: (500, 0.0) if n < 2 else (200, 0.0)
    await register(database_url, user_data="42", url=handler.url("/flaky"))
    await send(client, mo_event("f-1", "FLAKY001", sender="+5", user_data="42"))
    await wait_for(lambda: len(handler.received) == 3)
    await wait_for_state(database_url, "done")
    await asyncio.sleep(0.3)  # no fourth attempt follows
    assert len(handler.received) == 3
    assert {r.headers["webhook-id"] for r in handler.received} == {"f-1"}
    (forward,) = await forwards(database_url)
    assert (forward["state"], forward["attempts"]) == ("done", 3)
    attempts = await fetch(database_url, "SELECT status_code FROM forward_attempts ORDER BY id")
    assert [a["status_code"] for a in attempts] == [500, 500, 200]


async def test_a_handler_that_is_down_gets_the_forward_when_it_comes_back(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    await register(database_url, user_data="42", url=handler.url("/back"))
    await handler.stop()
    await send(client, mo_event("d-1", "DOWN0001", sender="+6", user_data="42"))
    await asyncio.sleep(0.5)
    failed = await fetch(database_url, "SELECT error FROM forward_attempts")
    assert failed, "the dispatcher tried while the handler was down"
    assert all("Connect" in (a["error"] or "") for a in failed)
    await handler.start()
    await wait_for_state(database_url, "done")
    assert [r.json["event_id"] for r in handler.received] == ["d-1"]


async def test_a_deploy_s_404s_kill_no_reply(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    # The handler answers 404 to its first three requests (it is being deployed), then
    # 200: every reply of the deploy is delivered once, in order, none dead.
    handler.scripts["/deploying"] = lambda n: (404, 0.0) if n < 3 else (200, 0.0)
    await register(database_url, user_data="42", url=handler.url("/deploying"))
    await send(
        client,
        *(mo_event(f"dep-{n}", f"DEPLOY0{n}", sender="+7", user_data="42") for n in range(3)),
    )
    await wait_for_state(database_url, "done", seconds=30)
    async with asyncio.timeout(30):
        while len([f for f in await forwards(database_url) if f["state"] == "done"]) < 3:  # noqa: ASYNC110 (the database is polled)
            await asyncio.sleep(0.05)
    states = [f["state"] for f in await forwards(database_url)]
    assert states == ["done"] * 3
    # Three 404s and the 200 for the first; the others, held behind it in their
    # conversation, once each and in order.
    received = [r.json["event_id"] for r in handler.received]
    assert received == ["dep-0"] * 4 + ["dep-1", "dep-2"]


async def test_a_status_final_for_the_handler_is_dead_at_once(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    handler.scripts["/reject"] = lambda n: (422, 0.0)
    await register(
        database_url, user_data="42", url=handler.url("/reject"), final_statuses=(400, 422)
    )
    await send(client, mo_event("r-1", "REJECT01", sender="+7", user_data="42"))
    await wait_for_state(database_url, "dead")
    await asyncio.sleep(0.3)
    assert len(handler.received) == 1
    (forward,) = await forwards(database_url)
    assert (forward["state"], forward["attempts"]) == ("dead", 1)
    assert forward["last_error"] == "the handler answered 422, final for this handler"


async def test_410_disables_the_handler_its_forwards_wait_and_enable_resumes_them(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    handler.scripts["/gone"] = lambda n: (410, 0.0) if n == 0 else (200, 0.0)
    handler_id = await register(database_url, user_data="42", url=handler.url("/gone"))
    await send(client, mo_event("g-1", "GONE0001", sender="+7", user_data="42"))
    async with asyncio.timeout(10):
        while not (await fetch(database_url, "SELECT 1 FROM forward_attempts")):  # noqa: ASYNC110 (the database is polled)
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # nothing more goes to a disabled handler
    (row,) = await fetch(
        database_url, "SELECT enabled, disabled_reason FROM handlers WHERE id = $1", handler_id
    )
    (forward,) = await forwards(database_url)
    assert (row["enabled"], row["disabled_reason"]) == (False, "the handler answered 410 Gone")
    assert (forward["state"], forward["attempts"]) == ("pending", 0)
    assert len(handler.received) == 1
    conn = await asyncpg.connect(database_url)
    try:
        await set_enabled(conn, handler_id, enabled=True)
    finally:
        await conn.close()
    await wait_for_state(database_url, "done")
    assert [r.json["event_id"] for r in handler.received] == ["g-1", "g-1"]


async def test_a_slow_handler_times_out_and_is_tried_again(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    handler.scripts["/slow"] = lambda n: (200, 2.0) if n == 0 else (200, 0.0)
    await register(database_url, user_data="42", url=handler.url("/slow"), timeout=0.3)
    await send(client, mo_event("s-1", "SLOW0001", sender="+8", user_data="42"))
    await wait_for_state(database_url, "done")
    (forward,) = await forwards(database_url)
    assert (forward["state"], forward["attempts"]) == ("done", 2)
    errors = await fetch(database_url, "SELECT error FROM forward_attempts ORDER BY id")
    assert errors[0]["error"] == "no complete answer within 0.3 s"


async def test_a_conversation_keeps_its_order_while_others_flow(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    # The first reply of +9 fails twice; its later replies must wait for it,
    # while the replies of +10 go through at once.
    def script(n: int) -> tuple[int, float]:
        event_id = handler.received[-1].json["event_id"]
        tries = sum(1 for r in handler.received if r.json["event_id"] == event_id)
        return (500, 0.0) if event_id == "a-1" and tries <= 2 else (200, 0.0)

    handler.scripts["/h"] = script
    await register(database_url, user_data="42", url=handler.url("/h"))
    await send(
        client,
        *[mo_event(f"a-{n}", f"CONVA00{n}", sender="+9", user_data="42") for n in (1, 2, 3)],
        *[mo_event(f"b-{n}", f"CONVB00{n}", sender="+10", user_data="42") for n in (1, 2, 3)],
    )
    await wait_for(lambda: len({r.json["event_id"] for r in handler.received}) == 6)
    await asyncio.sleep(0.2)
    order = [r.json["event_id"] for r in handler.received]
    a_done = [e for e in order if e.startswith("a-")]
    assert a_done == ["a-1", "a-1", "a-1", "a-2", "a-3"]
    assert [e for e in order if e.startswith("b-")] == ["b-1", "b-2", "b-3"]
    # +10's replies did not wait for +9's retries.
    assert order.index("b-3") < order.index("a-2")


async def test_the_signature_verifies_with_the_standard_webhooks_library(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    secret = new_secret()
    await register(database_url, user_data="42", url=handler.url("/signed"), secret=secret)
    await send(client, mo_event("sig-1", "SIGNED01", sender="+11", user_data="42"))
    await wait_for(lambda: len(handler.received) == 1)
    request = handler.received[0]
    verified = Webhook(secret).verify(request.body, request.headers)
    assert verified["event_id"] == "sig-1"
    tampered = request.body.replace(b"YES", b"NO!")
    with pytest.raises(Exception, match="No matching signature found"):
        Webhook(secret).verify(tampered, request.headers)


@pytest.mark.slow
async def test_two_dispatchers_deliver_a_thousand_forwards_once_each(
    make_settings: SettingsFactory, handler: HandlerServer, database_url: str
) -> None:
    await register(database_url, user_data="42", url=handler.url("/bulk"))
    settings = make_settings(dispatcher=False, **FAST)
    async with running(create_app(settings)) as client:
        bodies = [
            mo_event(f"bulk-{n}", f"BULK{n:04d}", sender=f"+1{n % 50:03d}", user_data="42")
            for n in range(1000)
        ]
        for start in range(0, 1000, 100):
            answers = await asyncio.gather(
                *(client.post(TOKEN_PATH, content=b) for b in bodies[start : start + 100])
            )
            assert {a.status_code for a in answers} == {200}
        await until_projected(client)
    pools = [await create_pool(database_url, size=4, command_timeout=10) for _ in range(2)]
    tasks = [asyncio.create_task(dispatcher(settings, pool).run()) for pool in pools]
    try:
        await wait_for(lambda: len(handler.received) >= 1000, seconds=60)
        await asyncio.sleep(0.5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pool in pools:
            await pool.close()
    ids = [r.headers["webhook-id"] for r in handler.received]
    assert len(ids) == 1000
    assert len(set(ids)) == 1000
    states = await fetch(database_url, "SELECT state, count(*) AS n FROM forwards GROUP BY state")
    assert states == [{"state": "done", "n": 1000}]
    # Each sender's replies arrived in the order they were received.
    for sender in {f"+1{n % 50:03d}" for n in range(1000)}:
        seen = [
            int(r.json["event_id"][5:]) for r in handler.received if r.json["mo"]["from"] == sender
        ]
        assert seen == sorted(seen)


async def dead_forward(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str, event_id: str
) -> int:
    """An MO whose forward is dead after a 404 (final for its handler); its handler
    answers 200 from then on."""
    handler.scripts["/fixed"] = lambda n: (404, 0.0) if n == 0 else (200, 0.0)
    handler_id = await register(
        database_url, user_data="42", url=handler.url("/fixed"), final_statuses=(404,)
    )
    sms_id = event_id.replace("-", "").upper().ljust(8, "0")
    await send(client, mo_event(event_id, sms_id, sender="+12", user_data="42"))
    await wait_for_state(database_url, "dead")
    return handler_id


async def test_a_dead_forward_is_delivered_when_retried(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    handler_id = await dead_forward(client, handler, database_url, "dead-1")
    conn = await asyncpg.connect(database_url)
    try:
        wrong_handler = await retry_forwards(conn, ForwardFilter(handler_id=handler_id + 1))
        queued = await retry_forwards(conn, ForwardFilter(handler_id=handler_id))
    finally:
        await conn.close()
    assert (wrong_handler, queued) == (0, 1)
    await wait_for_state(database_url, "done")
    assert [r.headers["webhook-id"] for r in handler.received] == ["dead-1", "dead-1"]
    attempts = await fetch(database_url, "SELECT status_code FROM forward_attempts ORDER BY id")
    assert [a["status_code"] for a in attempts] == [404, 200]


async def test_an_mo_wakes_the_dispatcher_when_it_commits_not_at_its_next_poll(
    make_settings: SettingsFactory, handler: HandlerServer, database_url: str
) -> None:
    await register(database_url, user_data="42", url=handler.url("/team-42"))
    # Polling once a minute: only the NOTIFY sent with the MO's commit can bring it
    # to the handler within the few seconds waited below.
    settings = make_settings(forward_backoff_base=0.05, dispatch_poll_interval=60)
    async with running(create_app(settings)) as client:
        listening = (
            "SELECT count(*) AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN %'"
        )
        for _ in range(200):
            if (await fetch(database_url, listening))[0]["n"]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the dispatcher never listened")
        await asyncio.sleep(0.3)  # its catch-up poll on listening is over
        await send(client, mo_event("mo-n1", "MO0000N1", sender="+33611111111", user_data="42"))
        await wait_for(lambda: len(handler.received) == 1, seconds=5)
    (request,) = handler.on("/team-42")
    assert request.json["event_id"] == "mo-n1"


async def test_a_dispatcher_started_before_the_migrations_delivers_once_they_ran(
    empty_database_url: str, make_settings: SettingsFactory, handler: HandlerServer
) -> None:
    # New pods started before `receiver migrate` ran: the claims fail until it does.
    settings = make_settings(database_url=empty_database_url, **FAST)
    pool = await create_pool(empty_database_url, size=2, command_timeout=10)
    task = asyncio.create_task(dispatcher(settings, pool).run())
    try:
        await asyncio.sleep(0.5)  # a few polls against a database without the schema
        assert not task.done()
        await asyncio.to_thread(migrate.upgrade, empty_database_url)
        async with running(create_app(settings.model_copy(update={"dispatcher": False}))) as app:
            await register(empty_database_url, user_data="42", url=handler.url("/team-42"))
            await send(app, mo_event("mo-1", "MO000001", sender="+33611111111", user_data="42"))
            await wait_for(lambda: len(handler.received) == 1)
        await wait_for_state(empty_database_url, "done")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()


def retry_command(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", "forwards", "retry", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "RECEIVER_DATABASE_URL": database_url},
        timeout=60,
        check=False,
    )


async def test_the_retry_command_queues_a_dead_forward_again(
    client: httpx.AsyncClient, handler: HandlerServer, database_url: str
) -> None:
    # The command once passed itself as the handler id and failed every time.
    handler_id = await dead_forward(client, handler, database_url, "dead-2")
    other = await asyncio.to_thread(retry_command, database_url, "--handler", str(handler_id + 1))
    queued = await asyncio.to_thread(retry_command, database_url, "--handler", str(handler_id))
    assert (other.returncode, other.stdout) == (0, "0 forward(s) queued\n"), other.stderr
    assert (queued.returncode, queued.stdout) == (0, "1 forward(s) queued\n"), queued.stderr
    await wait_for_state(database_url, "done")
    assert [r.headers["webhook-id"] for r in handler.received] == ["dead-2", "dead-2"]
    again = await asyncio.to_thread(retry_command, database_url)
    assert (again.returncode, again.stdout) == (0, "0 forward(s) queued\n"), again.stderr


async def test_the_api_sends_a_dead_forward_again(
    make_settings: SettingsFactory, handler: HandlerServer, database_url: str
) -> None:
    admin = {"authorization": "Bearer forwarding-admin-token"}
    settings = make_settings(admin_tokens="forwarding-admin-token", forward_max_attempts=1, **FAST)
    handler.scripts["/team-42"] = lambda n: (500 if n == 0 else 200, 0.0)
    await register(database_url, user_data="42", url=handler.url("/team-42"))
    async with running(create_app(settings)) as client:
        await send(client, mo_event("mo-1", "MO000001", sender="+33611111111", user_data="42"))
        await wait_for_state(database_url, "dead")
        (dead,) = await forwards(database_url)
        retried = await client.post(f"/api/v1/forwards/{dead['id']}/retry", headers=admin)
        await wait_for_state(database_url, "done")
    # With no dispatcher to take it: a delivered forward may be sent again, a queued one not.
    async with running(create_app(settings.model_copy(update={"dispatcher": False}))) as client:
        again = await client.post(f"/api/v1/forwards/{dead['id']}/retry", headers=admin)
        twice = await client.post(f"/api/v1/forwards/{dead['id']}/retry", headers=admin)
    assert retried.status_code == 200
    assert retried.json() == {"id": dead["id"], "state": "pending"}
    assert [r.json["event_id"] for r in handler.on("/team-42")] == ["mo-1", "mo-1"]
    assert again.status_code == 200
    assert twice.status_code == 409
    assert "only a dead or delivered forward" in twice.json()["error"]
    assert [f["state"] for f in await forwards(database_url)] == ["pending"]


async def test_a_forward_sent_again_carries_the_id_and_body_it_had(
    make_settings: SettingsFactory, handler: HandlerServer, database_url: str
) -> None:
    # What docs/forwarding.md says of a resend: the same webhook-id and body, a fresh
    # signature; a handler that drops repeats by id drops it.
    admin = {"authorization": "Bearer forwarding-admin-token"}
    settings = make_settings(admin_tokens="forwarding-admin-token", **FAST)
    secret = new_secret()
    await register(database_url, user_data="42", url=handler.url("/dedup"), secret=secret)
    async with running(create_app(settings)) as client:
        await send(client, mo_event("mo-again", "MOAGAIN1", sender="+33611111112", user_data="42"))
        await wait_for_state(database_url, "done")
        (done,) = await forwards(database_url)
        await client.post(f"/api/v1/forwards/{done['id']}/retry", headers=admin)
        await wait_for(lambda: len(handler.on("/dedup")) == 2, seconds=10)
    first, again = handler.on("/dedup")
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == "mo-again"
    assert first.body == again.body
    for request in (first, again):
        Webhook(secret).verify(request.body, request.headers)
    # A handler that keeps the ids it took, as Standard Webhooks suggests, takes it once.
    kept: set[str] = set()
    taken = []
    for request in (first, again):
        if request.headers["webhook-id"] not in kept:
            kept.add(request.headers["webhook-id"])
            taken.append(request)
    assert taken == [first]
