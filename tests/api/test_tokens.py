"""Tokens kept in the database: `receiver tokens add|list|revoke`, and what they open."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from receiver.api.tokens import FIRST_RUN, add_token
from receiver.app import create_app
from receiver.cli.access import ADMIN_TOKEN_FILE, FirstRun, settle_access
from receiver.settings import Settings
from testkit.support import console_sign_in, fetch, running
from tests.conftest import SettingsFactory


def tokens(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", "tokens", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "RECEIVER_DATABASE_URL": database_url},
        timeout=60,
        check=False,
    )


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_a_token_made_reads_is_listed_and_once_revoked_opens_nothing(
    make_settings: SettingsFactory, database_url: str
) -> None:
    made = tokens(database_url, "add", "--scope", "read", "--name", "dashboards")
    assert made.returncode == 0, made.stderr
    (token,) = made.stdout.splitlines()  # the token alone on its line
    assert token.startswith("rcv_")
    assert len(token) >= 40
    assert "shown this once" in made.stderr
    stored = await fetch(database_url, "SELECT name, scope, digest FROM api_tokens")
    assert [(s["name"], s["scope"]) for s in stored] == [("dashboards", "read")]
    assert token not in str(stored)  # a digest is kept, not the token

    async with running(create_app(make_settings(dispatcher=False))) as client:
        assert (await client.get("/api/v1/status", headers=bearer(token))).status_code == 200
        refused = await client.post(
            "/api/v1/handlers", headers=bearer(token), json={"default": True, "url": "http://a/"}
        )
        assert refused.status_code == 403

        listed = tokens(database_url, "list")
        assert listed.returncode == 0, listed.stderr
        assert "dashboards" in listed.stdout
        assert "read" in listed.stdout
        assert token not in listed.stdout
        (used,) = await fetch(database_url, "SELECT last_used_at FROM api_tokens")
        assert used["last_used_at"] is not None

        revoked = tokens(database_url, "revoke", "dashboards")
        assert revoked.returncode == 0, revoked.stderr
        # Within seconds, in this process too (it had the token cached as good).
        deadline = time.monotonic() + 10
        while (await client.get("/api/v1/status", headers=bearer(token))).status_code != 401:
            assert time.monotonic() < deadline, "the revoked token still opened the API"
            await asyncio.sleep(0.25)
    assert tokens(database_url, "revoke", "dashboards").returncode == 1
    assert "dashboards" not in tokens(database_url, "list").stdout
    assert "dashboards" in tokens(database_url, "list", "--revoked").stdout


def test_a_name_is_unique_among_live_tokens_and_a_scope_is_read_or_admin(
    database_url: str,
) -> None:
    assert tokens(database_url, "add", "--scope", "admin", "--name", "ops").returncode == 0
    again = tokens(database_url, "add", "--scope", "read", "--name", "ops")
    assert again.returncode == 2
    assert "a token named 'ops' exists already" in again.stderr
    assert tokens(database_url, "add", "--scope", "root", "--name", "x").returncode == 2
    assert tokens(database_url, "add", "--scope", "read", "--name", "bad name").returncode == 2
    assert tokens(database_url, "revoke", "ops").returncode == 0
    assert tokens(database_url, "add", "--scope", "read", "--name", "ops").returncode == 0


async def test_a_console_session_of_a_revoked_token_ends(
    make_settings: SettingsFactory, database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        token = await add_token(conn, "support", "read")
    finally:
        await conn.close()
    async with running(create_app(make_settings(dispatcher=False))) as client:
        signed_in = await console_sign_in(client, token)
        assert signed_in.status_code == 303
        page = await client.get("/console")
        assert page.status_code == 200
        assert 'href="/console/tokens"' not in page.text  # no admin controls
        assert tokens(database_url, "revoke", "support").returncode == 0
        deadline = time.monotonic() + 10
        while (await client.get("/console")).status_code != 303:
            assert time.monotonic() < deadline, "the session outlived its token"
            await asyncio.sleep(0.25)


async def test_an_admin_makes_and_revokes_tokens_on_the_console(
    make_settings: SettingsFactory, database_url: str
) -> None:
    admin = "console-tokens-admin-0123"
    async with running(create_app(make_settings(admin_tokens=admin))) as client:
        await console_sign_in(client, admin)
        page = await client.get("/console/tokens")
        assert page.status_code == 200
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        made = await client.post(
            "/console/tokens", data={"csrf": csrf, "name": "grafana", "scope": "read"}
        )
        assert made.status_code == 201
        token = made.text.split('<code id="new-token" class="token">', 1)[1].split("<", 1)[0]
        assert (await client.get("/api/v1/status", headers=bearer(token))).status_code == 200
        again = await client.get("/console/tokens")
        assert token not in again.text  # shown once
        assert "grafana" in again.text
        revoked = await client.post("/console/tokens/grafana/revoke", data={"csrf": csrf})
        assert revoked.status_code == 303
    rows = await fetch(
        database_url, "SELECT name, revoked_at IS NOT NULL AS revoked FROM api_tokens"
    )
    assert rows == [{"name": "grafana", "revoked": True}]


async def test_the_first_run_admin_token_works_until_an_admin_token_is_configured(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, data_dir=tmp_path)
    conn = await asyncpg.connect(database_url)
    try:
        first = await settle_access(conn, settings, embedded=True)
        assert first == (True, FirstRun.ACTIVE)
        token = (tmp_path / ADMIN_TOKEN_FILE).read_text().strip()
        # A second start keeps it.
        assert await settle_access(conn, settings, embedded=True) == (True, FirstRun.ACTIVE)
        (row,) = await fetch(database_url, "SELECT name, scope FROM api_tokens")
        assert row == {"name": FIRST_RUN, "scope": "admin"}

        configured = settings.model_copy(update={"admin_tokens": ("an-admin-token-of-env-0123",)})
        assert await settle_access(conn, configured, embedded=True) == (True, FirstRun.RETIRED)
        # Retired for good: without the environment's admin token, it stays revoked.
        assert await settle_access(conn, settings, embedded=True) == (False, FirstRun.REVOKED)
    finally:
        await conn.close()
    app = create_app(settings.model_copy(update={"callr_url_token": "t" * 20}))
    async with running(app) as client:
        assert (await client.get("/api/v1/status", headers=bearer(token))).status_code == 401
        login = await client.get("/console/login")
    assert "console-admin-token" not in login.text
    assert "The console is closed" in login.text


async def test_an_external_database_makes_no_first_run_token(database_url: str) -> None:
    settings = Settings(database_url=database_url, api_tokens=("a-read-token-of-env-0123",))
    conn = await asyncpg.connect(database_url)
    try:
        assert await settle_access(conn, settings, embedded=False) == (True, None)
    finally:
        await conn.close()
    assert await fetch(database_url, "SELECT 1 FROM api_tokens") == []


async def test_a_send_token_opens_no_read_and_no_console_page(
    make_settings: SettingsFactory, database_url: str
) -> None:
    made = tokens(database_url, "add", "--scope", "send", "--name", "shop-sender")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    async with running(create_app(make_settings(dispatcher=False))) as client:
        read = await client.get("/api/v1/messages", headers=bearer(token))
        signed_in = await console_sign_in(client, token)
    assert read.status_code == 403
    assert read.json()["error"].startswith("this token may send SMS, not read")
    assert signed_in.status_code == 401
    assert "send" in tokens(database_url, "list").stdout


async def test_with_database_tokens_only_cursors_are_signed_by_a_key_of_the_deployment(
    make_settings: SettingsFactory, database_url: str, another_database_url: str
) -> None:
    """No token in the environment: a cursor signed with what the key used to be (a
    public constant) is refused, and one deployment's cursor is refused by another."""
    import base64
    import hashlib
    import hmac

    import orjson

    from receiver.db.engine import create_pool
    from testkit.support import example
    from tests.conftest import TEST_URL_TOKEN

    async def a_token(url: str) -> str:
        pool = await create_pool(url, size=1, command_timeout=10)
        try:
            async with pool.acquire() as conn:
                return await add_token(conn, "reader", "read")
        finally:
            await pool.close()

    def forged(key: bytes, position: list[object]) -> str:
        payload = orjson.dumps(position)
        mac = hmac.new(key, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    public = hashlib.sha256(b"receiver-cursors\n\n").digest()
    token, other_token = await a_token(database_url), await a_token(another_database_url)
    async with running(create_app(make_settings(dispatcher=False))) as client:
        for name in ("v1-sms.mo", "v2.sms.inbound.received"):
            await client.post(f"/webhooks/callr/{TEST_URL_TOKEN}", content=example(name))
        headers = {"authorization": f"Bearer {token}"}
        for cursor in (
            forged(public, ["2026-01-01T00:00:00+00:00", "x"]),
            forged(public, [1, 2, 3, 4, 5, 6, 7, 8]),
        ):
            refused = await client.get(f"/api/v1/events?cursor={cursor}", headers=headers)
            assert refused.status_code == 400, refused.text
            assert refused.json()["parameter"] == "cursor"
        ours = (await client.get("/api/v1/events?limit=1", headers=headers)).json()
        assert ours["next_cursor"] is not None
        again = await client.get(f"/api/v1/events?cursor={ours['next_cursor']}", headers=headers)
        assert again.status_code == 200
    settings = make_settings(dispatcher=False, database_url=another_database_url)
    async with running(create_app(settings)) as client:
        headers = {"authorization": f"Bearer {other_token}"}
        theirs = await client.get(f"/api/v1/events?cursor={ours['next_cursor']}", headers=headers)
        assert theirs.status_code == 400
    keys = await fetch(database_url, "SELECT key FROM deployment_keys")
    other_keys = await fetch(another_database_url, "SELECT key FROM deployment_keys")
    assert len(keys) == 1
    assert len(keys[0]["key"]) == 32
    assert keys != other_keys
