"""`GET /api/v1/status` and the projection figures of `/metrics`: how far behind records are."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from receiver.app import create_app
from receiver.db.engine import create_pool
from receiver.db.migrate import head_revision
from receiver.projection.projector import Projector
from testkit.callr_events import mo_event
from testkit.support import running
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.test_metrics import value

TOKEN = "status-token-for-the-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"


async def test_status_and_metrics_say_what_waits_for_the_projector(
    make_settings: SettingsFactory, database_url: str
) -> None:
    # A serve process whose projection runs elsewhere (RECEIVER_PROJECTOR=false).
    settings = make_settings(api_tokens=TOKEN, dispatcher=False, projector=False)
    async with running(create_app(settings)) as client:
        sent_at = datetime.now(UTC)
        for n in range(3):
            body = mo_event(f"st-{n}", f"ST{n}", sender="+33600000009")
            assert (await client.post(WEBHOOK, content=body)).status_code == 200

        behind = (await client.get("/api/v1/status", headers=AUTH)).json()
        assert behind["projection"]["pending"] == 3
        oldest = datetime.fromisoformat(behind["projection"]["oldest_pending_received_at"])
        assert sent_at <= oldest <= datetime.now(UTC)
        assert behind["projection"]["lag_seconds"] >= 0
        assert (behind["schema"], behind["version"]) == (head_revision(), "0.1.0")
        metrics = (await client.get("/metrics")).text
        assert value(metrics, "receiver_projection_pending") == 3
        assert value(metrics, "receiver_projection_lag_seconds") > 0

        pool = await create_pool(database_url, size=2, command_timeout=10)
        try:
            assert await Projector(pool).drain() == 3
        finally:
            await pool.close()
        caught_up = (await client.get("/api/v1/status", headers=AUTH)).json()
        last_batch = caught_up["projection"].pop("last_batch_at")
        assert caught_up["projection"] == {
            "pending": 0,
            "lag_seconds": 0,
            "oldest_pending_received_at": None,
            "stalled": False,
            "stalled_since": None,
        }
        assert oldest <= datetime.fromisoformat(last_batch) <= datetime.now(UTC)


async def test_a_projection_that_makes_no_progress_while_events_wait_is_stalled(
    make_settings: SettingsFactory, database_url: str
) -> None:
    # No projector anywhere (a deployment whose workers are all down): events wait.
    settings = make_settings(
        api_tokens=TOKEN, dispatcher=False, projector=False, projection_stall_after="1s"
    )
    async with running(create_app(settings)) as client:
        body = mo_event("stall-0", "STALL0", sender="+33600000019")
        assert (await client.post(WEBHOOK, content=body)).status_code == 200
        fresh = (await client.get("/api/v1/status", headers=AUTH)).json()["projection"]
        # Waiting for less than the stall bound is only being behind.
        assert (fresh["pending"], fresh["stalled"], fresh["stalled_since"]) == (1, False, None)

        await asyncio.sleep(1.2)
        stalled = (await client.get("/api/v1/status", headers=AUTH)).json()["projection"]
        assert stalled["stalled"] is True
        # Since the oldest waiting event arrived: no batch has committed since.
        assert stalled["stalled_since"] == stalled["oldest_pending_received_at"]
        metrics = (await client.get("/metrics")).text
        assert value(metrics, "receiver_projection_stalled_seconds") >= 1.0
        assert value(metrics, "receiver_database_up") == 1

        pool = await create_pool(database_url, size=2, command_timeout=10)
        try:
            assert await Projector(pool).drain() == 1
        finally:
            await pool.close()
        moving = (await client.get("/api/v1/status", headers=AUTH)).json()["projection"]
        assert (moving["pending"], moving["stalled"], moving["stalled_since"]) == (0, False, None)


async def test_status_needs_an_api_token(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings(api_tokens=TOKEN))) as client:
        answer = await client.get("/api/v1/status")
    assert answer.status_code == 401
    assert "error" in answer.json()
