"""Sessions the server ends, and sign-in guessing throttled (findings of an outside review)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from receiver.app import create_app
from receiver.console.throttle import SignInThrottle
from tests.conftest import SettingsFactory
from tests.support import fetch
from tests.test_metrics import value

READ = "sessions-read-token-0123"
ADMIN = "sessions-admin-token-0123"


@asynccontextmanager
async def clients(app: Starlette, *addresses: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """The app started, and a client of it from each address."""
    async with LifespanManager(app, startup_timeout=20, shutdown_timeout=20) as manager:
        made = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app, client=(address, 40000)),
                base_url="http://receiver.test",
            )
            for address in addresses
        ]
        try:
            yield made
        finally:
            for client in made:
                await client.aclose()


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/console/login", data={"token": token, "next": ""})


async def csrf(client: httpx.AsyncClient) -> str:
    page = await client.get("/console/handlers")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def add_handler(client: httpx.AsyncClient, token: str, user_data: str) -> httpx.Response:
    return await client.post(
        "/console/handlers",
        data={"csrf": token, "user_data": user_data, "url": "http://127.0.0.1:9/h"},
    )


async def test_a_cookie_kept_from_before_sign_out_opens_nothing(
    make_settings: SettingsFactory, database_url: str
) -> None:
    app = create_app(make_settings(admin_tokens=ADMIN, dispatcher=False))
    async with clients(app, "198.51.100.1") as (client,):
        assert (await sign_in(client, ADMIN)).status_code == 303
        kept = dict(client.cookies)
        form = await csrf(client)
        signed_out = await client.post("/console/logout", data={"csrf": form})
        assert signed_out.status_code == 303

        client.cookies.update(kept)  # the cookie copied before signing out
        assert (await client.get("/console/handlers")).status_code == 303
        refused = await add_handler(client, form, "after-sign-out")
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/console/login")
    assert await fetch(database_url, "SELECT 1 FROM handlers") == []


async def test_an_admin_signs_out_every_session_at_once(
    make_settings: SettingsFactory, database_url: str
) -> None:
    settings = make_settings(api_tokens=READ, admin_tokens=ADMIN, dispatcher=False)
    # Two processes of one deployment: an app each, one database.
    async with (
        clients(create_app(settings), "198.51.100.1", "198.51.100.2") as (admin, reader),
        clients(create_app(settings), "198.51.100.3") as (elsewhere,),
    ):
        for client, token in ((admin, ADMIN), (reader, READ), (elsewhere, ADMIN)):
            assert (await sign_in(client, token)).status_code == 303
            assert (await client.get("/console")).status_code == 200
        # A read token may not.
        refused = await reader.post("/console/logout-everywhere", data={"csrf": await csrf(reader)})
        assert refused.status_code == 403
        assert (await reader.get("/console")).status_code == 200

        ended = await admin.post("/console/logout-everywhere", data={"csrf": await csrf(admin)})
        assert ended.status_code == 303
        assert ended.headers["location"] == "/console/login?notice=signed-out-everywhere&n=3"
        for client in (admin, reader, elsewhere):
            assert (await client.get("/console")).status_code == 303
    sessions = await fetch(
        database_url, "SELECT ended_at IS NOT NULL AS ended FROM console_sessions"
    )
    assert sessions == [{"ended": True}] * 3


async def test_a_session_whose_token_was_removed_opens_nothing(
    make_settings: SettingsFactory,
) -> None:
    async with clients(create_app(make_settings(api_tokens=READ)), "198.51.100.1") as (client,):
        assert (await sign_in(client, READ)).status_code == 303
        kept = dict(client.cookies)
    # Restarted with the token gone (another one configured).
    other = make_settings(api_tokens="a-new-read-token-0123")
    async with clients(create_app(other), "198.51.100.1") as (client,):
        client.cookies.update(kept)
        assert (await client.get("/console")).status_code == 303


async def test_guessing_is_throttled_and_the_right_token_from_elsewhere_still_opens(
    make_settings: SettingsFactory,
) -> None:
    app = create_app(make_settings(admin_tokens=ADMIN, dispatcher=False))
    async with clients(app, "203.0.113.66", "198.51.100.9") as (guesser, owner):
        answers = [(await sign_in(guesser, f"guess-{n:020d}")).status_code for n in range(8)]
        assert answers == [401] * 5 + [429] * 3
        throttled = await sign_in(guesser, ADMIN)  # even the right token, from there
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert "Too many failed sign-ins" in throttled.text
        assert "set-cookie" not in throttled.headers

        assert (await sign_in(owner, ADMIN)).status_code == 303
        metrics = (await owner.get("/metrics")).text
    assert value(metrics, "receiver_console_sign_ins_total", outcome="throttled") >= 4
    assert value(metrics, "receiver_console_sign_ins_total", outcome="refused") >= 5


def test_the_throttle_forgets_after_a_minute_and_has_a_ceiling_for_everyone() -> None:
    now = [1000.0]
    throttle = SignInThrottle(per_address=3, overall=5, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("a") is None
        throttle.failed("a")
    assert throttle.retry_after("a") == 60
    now[0] += 59.5
    assert throttle.retry_after("a") == 1
    now[0] += 0.5
    assert throttle.retry_after("a") is None

    # Spread over many addresses, guesses meet the ceiling for all.
    for address in ("b", "c", "d", "e", "f"):
        throttle.failed(address)
    assert throttle.retry_after("never-failed") == 60
    now[0] += 60
    assert throttle.retry_after("never-failed") is None
