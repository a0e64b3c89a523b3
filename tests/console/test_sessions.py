"""Sessions the server ends, and sign-in guessing throttled (findings of an outside review)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from receiver.app import create_app
from testkit.support import console_sign_in, console_sign_in_sync, fetch
from tests.conftest import SettingsFactory
from tests.test_cli import free_port, wait_ready
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
    return await console_sign_in(client, token)


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
        assert "receiver_console=" not in throttled.headers.get("set-cookie", "")

        assert (await sign_in(owner, ADMIN)).status_code == 303
        metrics = (await owner.get("/metrics")).text
    assert value(metrics, "receiver_console_sign_ins_total", outcome="throttled") >= 4
    assert value(metrics, "receiver_console_sign_ins_total", outcome="refused") >= 5


async def test_parallel_guesses_are_counted_before_any_token_is_checked(
    make_settings: SettingsFactory,
) -> None:
    """40 wrong sign-ins at once from one address: five are checked, the rest wait."""
    app = create_app(make_settings(admin_tokens=ADMIN, dispatcher=False))
    async with clients(app, "203.0.113.70") as (guesser,):
        answers = await asyncio.gather(*(sign_in(guesser, f"guess-{n:020d}") for n in range(40)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [401] * 5 + [429] * 35


async def test_the_count_is_shared_by_every_process_and_the_window_ends(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """Two apps on one database (two processes of a deployment) count one address's
    guesses together; once its window is over, the address may try again."""
    settings = make_settings(admin_tokens=ADMIN, dispatcher=False)
    async with (
        clients(create_app(settings), "203.0.113.71") as (first,),
        clients(create_app(settings), "203.0.113.71") as (second,),
    ):
        answers = []
        for n in range(8):
            client = first if n % 2 else second
            answers.append((await sign_in(client, f"guess-{n:020d}")).status_code)
        assert answers == [401] * 5 + [429] * 3
        await fetch(
            database_url,
            "UPDATE auth_failures SET window_start = window_start - interval '61 seconds'",
        )
        assert (await sign_in(first, ADMIN)).status_code == 303


async def test_wrong_bearer_tokens_are_throttled_per_address(
    make_settings: SettingsFactory,
) -> None:
    app = create_app(make_settings(api_tokens=READ, dispatcher=False))
    async with clients(app, "203.0.113.72", "198.51.100.10") as (guesser, owner):
        answers = [
            await guesser.get("/api/v1/status", headers={"authorization": f"Bearer guess-{n:020d}"})
            for n in range(8)
        ]
        assert [a.status_code for a in answers] == [401] * 5 + [429] * 3
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 60
        assert "too many tries" in answers[-1].json()["error"]
        right = {"authorization": f"Bearer {READ}"}
        assert (await owner.get("/api/v1/status", headers=right)).status_code == 200
        parallel = await asyncio.gather(
            *(
                owner.get("/api/v1/status", headers={"authorization": f"Bearer x{n:020d}"})
                for n in range(20)
            )
        )
        assert sorted(a.status_code for a in parallel) == [401] * 5 + [429] * 15


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_x_forwarded_for_is_believed_only_from_the_trusted_proxies(
    database_url: str, tmp_path: Path, trusted: str
) -> None:
    """Wrong sign-ins from 127.0.0.1, each with another X-Forwarded-For: with no trusted
    proxy they all count against 127.0.0.1; with 127.0.0.1 trusted, each against its own
    address. Either way the right token from an address that never failed opens."""
    port = free_port()
    env = {
        **os.environ,
        "RECEIVER_DATABASE_URL": database_url,
        "RECEIVER_ADMIN_TOKENS": ADMIN,
        "RECEIVER_TRUSTED_PROXIES": trusted,
        "RECEIVER_CALLR_HMAC_SECRETS": "sessions-hmac-secret-0123456789",
        "RECEIVER_DISPATCHER": "false",
        "RECEIVER_DATA_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        wait_ready(port, process)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as proxy:
            csrf = re.search(r'name="csrf" value="([^"]+)"', proxy.get("/console/login").text)
            assert csrf is not None
            statuses = [
                proxy.post(
                    "/console/login",
                    data={"token": f"guess-{n:020d}", "csrf": csrf.group(1)},
                    headers={"x-forwarded-for": f"198.51.100.{n + 1}"},
                ).status_code
                for n in range(10)
            ]
        local = httpx.HTTPTransport(local_address="127.0.0.5")
        with httpx.Client(base_url=base, timeout=10, transport=local) as owner:
            signed = console_sign_in_sync(owner, ADMIN)
    finally:
        process.terminate()
        process.wait(timeout=30)
    if trusted:
        assert statuses == [401] * 10
    else:
        assert statuses == [401] * 5 + [429] * 5
    assert signed.status_code == 303


async def test_a_sign_in_posted_from_another_site_is_refused(
    make_settings: SettingsFactory,
) -> None:
    """Login CSRF: a page elsewhere posts the form with the attacker's token. Without the
    form's token and its SameSite cookie (which a cross-site post does not carry), the
    browser is not signed in, and no token is looked at."""
    app = create_app(make_settings(admin_tokens=ADMIN, dispatcher=False))
    async with clients(app, "203.0.113.80") as (victim,):
        no_token = await victim.post("/console/login", data={"token": ADMIN, "next": ""})
        form = await victim.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        # The cookie was set by the form; a cross-site post carries neither of them.
        victim.cookies.clear()
        no_cookie = await victim.post(
            "/console/login", data={"token": ADMIN, "next": "", "csrf": csrf.group(1)}
        )
        wrong = await victim.get("/console/login")
        forged = await victim.post(
            "/console/login", data={"token": ADMIN, "next": "", "csrf": "x" * 32}
        )
        for refused in (no_token, no_cookie, forged):
            assert refused.status_code == 403, refused.text
            assert "another site" in refused.text
            assert "receiver_console=" not in refused.headers.get("set-cookie", "")
        assert wrong.status_code == 200
        assert (await console_sign_in(victim, ADMIN)).status_code == 303


async def test_the_counts_of_windows_long_over_are_dropped(database_url: str) -> None:
    """The table of failures does not grow with every address that ever failed."""
    from receiver.api.throttle import Throttle
    from receiver.db.engine import create_pool

    throttle = Throttle(window=0.02)
    pool = await create_pool(database_url, size=1, command_timeout=10)
    try:
        async with pool.acquire() as conn:
            await throttle.charge(conn, "203.0.113.90")
            await asyncio.sleep(0.5)
            await throttle.charge(conn, "203.0.113.91")
    finally:
        await pool.close()
    rows = await fetch(database_url, "SELECT address FROM auth_failures")
    assert rows == [{"address": "203.0.113.91"}]
