from __future__ import annotations

from receiver.app import create_app
from receiver.db import migrate
from testkit.support import fetch, running
from tests.conftest import SettingsFactory


async def test_healthz_answers_while_the_process_runs(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings())) as client:
        response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_ready_at_the_schema_head(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings())) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    head = migrate.head_revision()
    assert response.json() == {"status": "ready", "schema": head, "head": head}


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


async def test_readyz_says_when_a_newer_release_migrated_the_database(
    make_settings: SettingsFactory, database_url: str
) -> None:
    await fetch(
        database_url,
        "UPDATE alembic_version SET version_num = 'from_a_newer_release' RETURNING version_num",
    )
    async with running(create_app(make_settings())) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unready",
        "reason": "the database is at schema revision from_a_newer_release, which this code"
        f" ({migrate.head_revision()}) does not know: a newer release migrated it and"
        " recorded no older code that runs on it; run that release",
    }


async def test_the_service_s_address_opens_the_console(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings())) as client:
        response = await client.get("/")
    assert (response.status_code, response.headers["location"]) == (307, "/console")
