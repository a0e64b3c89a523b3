"""The app's lifespan: an idle service stops at once when told to; a start that fails
closes what it opened."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from receiver.app import create_app
from testkit.support import PostgresServer, fetch
from tests.conftest import SettingsFactory


async def test_an_idle_service_stops_in_under_a_second(make_settings: SettingsFactory) -> None:
    # Short polls: the projector's and dispatcher's waits time out all the time, so a
    # shutdown often lands as one ends (where asyncio.wait_for lost the cancellation on
    # Python 3.11, and the shutdown then waited its whole 5 s for them).
    settings = make_settings(projector_poll_interval=0.01, dispatch_poll_interval=0.01)
    stops = []
    for _ in range(5):
        manager = LifespanManager(create_app(settings), startup_timeout=20, shutdown_timeout=20)
        await manager.__aenter__()
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await manager.__aexit__(None, None, None)
        stops.append(time.monotonic() - started)
    assert max(stops) < 1.0, stops


async def test_a_start_that_fails_midway_closes_what_it_opened(
    make_settings: SettingsFactory, database_url: str, postgres: PostgresServer
) -> None:
    # A role that may connect but not write: the start fails at the deployment's key,
    # after the three pools have opened and the writer has started.
    role = f"no_rights_{uuid.uuid4().hex[:8]}"
    await fetch(postgres.admin_url, f'CREATE ROLE "{role}" LOGIN')
    try:
        url = make_url(database_url).set(username=role).render_as_string(hide_password=False)
        app = create_app(make_settings(database_url=url))
        before = {task.get_name() for task in asyncio.all_tasks()}
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with LifespanManager(app, startup_timeout=20, shutdown_timeout=20):
                pass
        # Nothing is left behind: no connection of the role, no task of the app's.
        left = await fetch(
            database_url, "SELECT pid FROM pg_stat_activity WHERE usename = $1", role
        )
        assert left == []
        assert {task.get_name() for task in asyncio.all_tasks()} <= before
    finally:
        await fetch(postgres.admin_url, f'DROP ROLE IF EXISTS "{role}"')
