from __future__ import annotations

import asyncio

import pytest
from alembic.script import ScriptDirectory

from receiver.db import migrate
from tests.support import fetch


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
