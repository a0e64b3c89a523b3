from __future__ import annotations

from receiver.app import create_app
from receiver.db import migrate
from tests.conftest import SettingsFactory
from tests.support import running


async def test_healthz_answers_while_the_process_runs(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings())) as client:
        response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_ready_at_the_schema_head(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings())) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "schema": migrate.head_revision()}


async def test_readyz_is_unready_without_a_schema(
    make_settings: SettingsFactory, empty_database_url: str
) -> None:
    async with running(create_app(make_settings(database_url=empty_database_url))) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unready",
        "reason": "the database has no schema: run `receiver migrate`",
    }
