"""The database goes away under a running service, then comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from receiver.app import create_app
from receiver.db import migrate
from receiver.db.embedded import embedded_database_url, start_embedded
from receiver.settings import Settings
from testkit.support import example, fetch, running, with_fields
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

TOKEN_PATH = f"/webhooks/callr/{TEST_URL_TOKEN}"
JSON = {"content-type": "application/json"}


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """A PostgreSQL server of this test's own, which it may stop and start, and its database."""
    server = start_embedded(tmp_path / "outage", cleanup="delete")
    try:
        url = embedded_database_url(server)
        migrate.upgrade(url)
        yield server, url
    finally:
        server.cleanup()


def stop(server: Any) -> None:
    """A fast shutdown (SIGINT to the postmaster): clients are cut off at once."""
    pid = server.get_pid()
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("PostgreSQL did not stop within 30 s")


async def test_503_while_the_database_is_down_then_200_without_a_restart(
    own_server: tuple[Any, str], tmp_path: Path
) -> None:
    server, url = own_server
    settings = Settings(
        database_url=url,
        data_dir=tmp_path / "data",
        callr_url_token=TEST_URL_TOKEN,
        ack_timeout=2.0,
        retry_after=7,
    )
    body = example("v1-sms.mt.status_update")
    async with running(create_app(settings)) as client:
        before = await client.post(TOKEN_PATH, content=body, headers=JSON)
        assert before.status_code == 200

        await asyncio.to_thread(stop, server)
        during = []
        for n in range(5):
            started = time.monotonic()
            response = await client.post(
                TOKEN_PATH, content=with_fields(body, event_id=f"outage-{n}"), headers=JSON
            )
            during.append((response, time.monotonic() - started))
        ready_during = await client.get("/readyz")

        await asyncio.to_thread(server.ensure_postgres_running)
        after = await client.post(
            TOKEN_PATH, content=with_fields(body, event_id="outage-0"), headers=JSON
        )
        ready_after = await client.get("/readyz")

    for response, seconds in during:
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"
        assert "retry later" in response.json()["error"]
        assert seconds < settings.ack_timeout + 1
    assert ready_during.status_code == 503
    assert ready_during.json()["reason"] == "the database is unavailable"
    assert after.status_code == 200
    assert after.json() == {"result": "stored", "event_id": "outage-0"}
    assert ready_after.status_code == 200
    stored = await fetch(url, "SELECT event_id FROM events ORDER BY event_id")
    # What was refused with 503 was not stored: only what got a 200 is there.
    assert [row["event_id"] for row in stored] == ["942214623649723405HGNSmlw2sOrjq", "outage-0"]


async def test_a_commit_slower_than_the_ack_timeout_gets_503_and_still_lands(
    make_settings: SettingsFactory, database_url: str
) -> None:
    body = example("v1-sms.mt.status_update")
    settings = make_settings(ack_timeout=0.5, retry_after=7)
    blocker = await asyncpg.connect(database_url)
    try:
        async with running(create_app(settings)) as client:
            async with blocker.transaction():
                # The batch waits for this lock until after its request's deadline.
                await blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                started = time.monotonic()
                late = await client.post(TOKEN_PATH, content=body, headers=JSON)
                waited = time.monotonic() - started
            retried = await client.post(TOKEN_PATH, content=with_fields(body, try_=1), headers=JSON)
    finally:
        await blocker.close()
    assert late.status_code == 503
    assert late.headers["retry-after"] == "7"
    assert late.json()["error"] == "the database did not commit in time; retry later"
    assert settings.ack_timeout <= waited < settings.ack_timeout + 0.5
    # The batch committed once the lock was gone (the service stopped only after it):
    # the event is stored once, with both deliveries, whichever batch stored it.
    assert retried.status_code == 200
    assert retried.json()["result"] in ("stored", "duplicate")
    assert len(await fetch(database_url, "SELECT 1 FROM events")) == 1
    deliveries = await fetch(database_url, "SELECT attempt FROM deliveries ORDER BY attempt")
    assert [d["attempt"] for d in deliveries] == [0, 1]
