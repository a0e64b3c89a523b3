"""`receiver prune`: old raw events go, message records stay, and rebuild knows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from receiver.app import create_app
from receiver.status import Status
from testkit.callr_events import lifecycle, mo_event, v2_event
from testkit.support import fetch, running, until_projected, with_fields
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.test_cli import receiver_command

WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"
C, S, D = Status.CREATED, Status.SENT, Status.DELIVERED
OLD = datetime.now(UTC) - timedelta(days=100)


async def store(make_settings: SettingsFactory, database_url: str) -> None:
    """Eight events, five of them (with six deliveries) and one unrouted MO 100 days old."""
    async with running(create_app(make_settings(dispatcher=False))) as client:
        for n in range(8):
            body = v2_event(f"p-{n}", f"prun{n:04d}", lifecycle(C, S, D))
            assert (await client.post(WEBHOOK, content=body)).status_code == 200
        retry = with_fields(v2_event("p-0", "prun0000", lifecycle(C, S, D)), try_=1)
        assert (await client.post(WEBHOOK, content=retry)).status_code == 200
        mo = mo_event("p-mo", "PRUNMO01", sender="+3", user_data="nobody")
        assert (await client.post(WEBHOOK, content=mo)).status_code == 200
        await until_projected(client)
    aged = ["p-0", "p-1", "p-2", "p-3", "p-4", "p-mo"]
    for table in ("events", "deliveries"):
        await fetch(
            database_url,
            f"UPDATE {table} SET received_at = $1 WHERE event_id = ANY($2) RETURNING 1",  # noqa: S608
            OLD,
            aged,
        )


def counts(database_url: str) -> dict[str, int]:
    row = asyncio.run(
        fetch(
            database_url,
            "SELECT (SELECT count(*) FROM events) AS events,"
            " (SELECT count(*) FROM deliveries) AS deliveries,"
            " (SELECT count(*) FROM messages) AS messages,"
            " (SELECT count(*) FROM transitions) AS transitions",
        )
    )
    return dict(row[0])


def test_prune_removes_old_events_keeps_messages_and_stops_rebuild(
    make_settings: SettingsFactory, database_url: str
) -> None:
    asyncio.run(store(make_settings, database_url))
    env = {"RECEIVER_DATABASE_URL": database_url}
    before = counts(database_url)

    dry = receiver_command("prune", "--events-older-than", "90d", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    # The MO waits for a handler: its event stays however old.
    assert "5 events and 6 deliveries received before" in dry.stdout
    assert "would be removed; nothing was changed" in dry.stdout
    assert counts(database_url) == before

    done = receiver_command("prune", "--events-older-than", "90d", "--batch", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert "removed 5 events and 6 deliveries" in done.stdout
    assert "in 3 batches" in done.stdout
    after = counts(database_url)
    assert after["events"] == before["events"] - 5
    assert after["deliveries"] == before["deliveries"] - 6
    assert (after["messages"], after["transitions"]) == (before["messages"], before["transitions"])
    left = asyncio.run(fetch(database_url, "SELECT event_id FROM events ORDER BY event_id"))
    assert [r["event_id"] for r in left] == ["p-5", "p-6", "p-7", "p-mo"]
    # The statistics of the day the events were received are counted again.
    marked = asyncio.run(fetch(database_url, "SELECT DISTINCT day FROM stats_changes"))
    assert OLD.date() in {r["day"] for r in marked}

    again = receiver_command("prune", "--events-older-than", "90d", env=env)
    assert "removed 0 events" in again.stdout

    refused = receiver_command("rebuild", env=env)
    assert refused.returncode == 1
    assert "were pruned: a rebuild would drop the messages they made" in refused.stderr
    assert counts(database_url)["messages"] == before["messages"]


@pytest.mark.parametrize("age", ["90", "ninety days", "5 d", "1y"])
def test_an_age_that_is_not_one_is_refused(age: str) -> None:
    result = receiver_command("prune", "--events-older-than", age)
    assert result.returncode == 2
    assert "is not an age: a whole number and a unit" in result.stderr


@pytest.mark.parametrize("age", ["0d", "23h", "30m"])
def test_an_age_under_a_day_is_refused_as_deduplication_still_needs_the_events(age: str) -> None:
    result = receiver_command("prune", "--events-older-than", age)
    assert result.returncode == 2
    assert f"{age!r} is too recent: a pruned event is no longer recognised" in result.stderr


def test_an_event_the_projector_has_not_applied_is_kept_however_old(
    make_settings: SettingsFactory, database_url: str
) -> None:
    async def store_unprojected() -> None:
        async with running(create_app(make_settings(dispatcher=False, projector=False))) as client:
            body = v2_event("late-0", "late0000", lifecycle(C, S, D))
            assert (await client.post(WEBHOOK, content=body)).status_code == 200
        await fetch(database_url, "UPDATE events SET received_at = $1 RETURNING 1", OLD)

    asyncio.run(store_unprojected())
    env = {"RECEIVER_DATABASE_URL": database_url}
    done = receiver_command("prune", "--events-older-than", "90d", env=env)
    assert done.returncode == 0, done.stderr
    assert counts(database_url)["events"] == 1
    pending = asyncio.run(fetch(database_url, "SELECT event_id FROM projection_pending"))
    assert pending == [{"event_id": "late-0"}]
