from __future__ import annotations

import asyncio

import pytest
from alembic.script import ScriptDirectory

from receiver.db import migrate
from testkit.support import fetch


def test_there_is_one_head() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config(""))
    assert len(script.get_heads()) == 1
    assert script.get_current_head() == migrate.head_revision()


def test_upgrade_from_empty_matches_the_models(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    migrate.check(empty_database_url)  # raises when models and migrations drift
    rows = asyncio.run(fetch(empty_database_url, "SELECT version_num FROM alembic_version"))
    assert rows == [{"version_num": migrate.head_revision()}]


def test_upgrading_twice_is_harmless(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    migrate.upgrade(empty_database_url)
    migrate.check(empty_database_url)


def test_downgrade_to_base_and_back_with_data_present(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    asyncio.run(
        fetch(
            empty_database_url,
            "INSERT INTO events (event_id, received_at, state, fingerprint, body)"
            " VALUES ('e1', now(), 'processed', '\\x00', '{}')",
        )
    )
    migrate.downgrade(empty_database_url, "base")
    tables = asyncio.run(
        fetch(empty_database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    )
    assert [t["tablename"] for t in tables] == ["alembic_version"]
    migrate.upgrade(empty_database_url)
    migrate.check(empty_database_url)


def test_events_stored_before_the_projector_are_not_projected_again(
    empty_database_url: str,
) -> None:
    # Stored by the release before: projected in the transaction that stored it.
    migrate.upgrade(empty_database_url, "0008")
    asyncio.run(
        fetch(
            empty_database_url,
            "INSERT INTO events (event_id, received_at, state, fingerprint, body)"
            " VALUES ('old', now(), 'processed', '\\x00', '{}')",
        )
    )
    migrate.upgrade(empty_database_url)
    assert asyncio.run(fetch(empty_database_url, "SELECT * FROM projection_pending")) == []


def test_a_downgrade_below_the_projector_refuses_to_drop_pending_events(
    empty_database_url: str,
) -> None:
    migrate.upgrade(empty_database_url)
    asyncio.run(
        fetch(
            empty_database_url,
            "INSERT INTO projection_pending (event_id, received_at) VALUES ('waiting', now())",
        )
    )
    with pytest.raises(Exception, match="events are still pending projection"):
        migrate.downgrade(empty_database_url, "0008")
    rows = asyncio.run(fetch(empty_database_url, "SELECT event_id FROM projection_pending"))
    assert rows == [{"event_id": "waiting"}]


def test_0019_tells_own_events_by_where_they_were_stored_and_clears_times_out_of_range(
    empty_database_url: str,
) -> None:
    migrate.upgrade(empty_database_url, "0018")
    url = empty_database_url
    event = (
        "INSERT INTO events (event_id, type, received_at, emitted_at, state, fingerprint, body,"
        " sms_id) VALUES ($1, $2, now(), $3::text::timestamptz, $4, '\\x00', '{}', $5)"
    )
    delivery = (
        "INSERT INTO deliveries (event_id, attempt, fingerprint, received_at, headers)"
        " VALUES ($1, 0, '\\x00', now(), $2::jsonb)"
    )
    own_headers = '{"x-receiver-source": "POST /api/v1/sms"}'
    webhook_headers = '{"user-agent": "forger"}'
    rows: list[tuple[str, str, str | None, str, str | None, str]] = [
        # (id, type, emitted_at, state, sms_id, the delivery's headers)
        ("send:snd_1:1", "receiver.send", None, "processed", None, own_headers),
        ("send:snd_2:1", "receiver.send", None, "unhandled", None, webhook_headers),
        ("callr-api:x:1", "sms.mo", None, "processed", "x", webhook_headers),
        ("far", "sms.mt.status_update", "9999-12-31T23:59:59-01:00", "processed", "far", "{}"),
        ("near", "sms.mt.status_update", "2026-01-01T00:00:00Z", "processed", "far", "{}"),
        ("fine", "sms.mt.status_update", "2026-01-01T00:00:00Z", "processed", "fine", "{}"),
    ]
    message = (
        "INSERT INTO messages (sms_id, direction, status, provider_status, status_at,"
        " status_rank, status_terminal, first_seen_at, last_seen_at, created_at)"
        " VALUES ($1, 'outbound', 'sent', 'SENT', now(), 3, false, now(), now(),"
        " $2::text::timestamptz)"
    )

    async def fill() -> None:
        for event_id, kind, emitted, state, sms_id, headers in rows:
            await fetch(url, event, event_id, kind, emitted, state, sms_id)
            await fetch(url, delivery, event_id, headers)
        await fetch(url, message, "far", "0001-01-01T00:00:00+01:00")
        await fetch(url, message, "fine", "2026-01-01T00:00:00Z")

    asyncio.run(fill())
    migrate.upgrade(url)
    found = asyncio.run(
        fetch(url, "SELECT event_id, own, state, emitted_at IS NULL AS cleared FROM events")
    )
    by_id = {row["event_id"]: row for row in found}
    assert (by_id["send:snd_1:1"]["own"], by_id["send:snd_1:1"]["state"]) == (True, "processed")
    for forged in ("send:snd_2:1", "callr-api:x:1"):
        assert (by_id[forged]["own"], by_id[forged]["state"]) == (False, "invalid")
    assert (by_id["far"]["state"], by_id["far"]["cleared"]) == ("invalid", True)
    assert by_id["fine"]["state"] == "processed"
    # The records that held a time out of range are built again from their events.
    messages = asyncio.run(fetch(url, "SELECT sms_id FROM messages"))
    assert messages == [{"sms_id": "fine"}]
    pending = asyncio.run(fetch(url, "SELECT event_id FROM projection_pending"))
    assert pending == [{"event_id": "near"}]


def test_0020_takes_the_estimate_out_of_the_records_of_sent_sms_and_queues_their_events(
    empty_database_url: str,
) -> None:
    migrate.upgrade(empty_database_url, "0019")
    url = empty_database_url
    send = (
        "INSERT INTO sends (id, request_digest, api, to_number, text, encoding, parts, state,"
        " seq, sms_id, requested_at, updated_at)"
        " VALUES ($1, 'd', 'v1', '+33612345678', 't', 'unicode', 3, 'accepted', 3, $2, now(),"
        " now())"
    )
    message = (
        "INSERT INTO messages (sms_id, direction, status, provider_status, status_at,"
        " status_rank, status_terminal, first_seen_at, last_seen_at, parts, encoding)"
        " VALUES ($1, 'outbound', 'sent', 'SENT', now(), 3, false, now(), now(), 3, 'unicode')"
    )
    event = (
        "INSERT INTO events (event_id, type, received_at, state, fingerprint, body, sms_id)"
        " VALUES ($1, 'sms.mt.status_update', now(), 'processed', '\\x00', '{}', $2)"
    )

    async def fill() -> None:
        await fetch(url, send, "snd_1", "sent0001")
        for sms_id in ("sent0001", "other001"):  # other001: no send, CALLR's own
            await fetch(url, message, sms_id)
            await fetch(url, event, f"report-{sms_id}", sms_id)

    asyncio.run(fill())
    migrate.upgrade(url)
    records = asyncio.run(
        fetch(url, "SELECT sms_id, parts, encoding FROM messages ORDER BY sms_id")
    )
    assert records == [
        {"sms_id": "other001", "parts": 3, "encoding": "unicode"},
        {"sms_id": "sent0001", "parts": None, "encoding": None},
    ]
    pending = asyncio.run(fetch(url, "SELECT event_id FROM projection_pending"))
    assert pending == [{"event_id": "report-sent0001"}]
    estimate = asyncio.run(fetch(url, "SELECT parts, encoding FROM sends"))
    assert estimate == [{"parts": 3, "encoding": "unicode"}]
