"""Fixtures: one PostgreSQL per session, a migrated template, a fresh clone per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from receiver.callr.gsm import use_callr_table
from receiver.db import migrate
from receiver.db.embedded import start_embedded
from receiver.settings import Settings
from testkit.support import PostgresServer

TEST_URL_TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_receiver_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test states its settings; none leak in from the shell that runs pytest."""
    for name in list(os.environ):
        if name.startswith("RECEIVER_") and name != "RECEIVER_TEST_DATABASE_URL":
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _offline_gsm_table() -> Iterator[None]:
    """A test whose sender fetched CALLR's GSM table leaves the next one the offline table."""
    yield
    use_callr_table({})


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """RECEIVER_TEST_DATABASE_URL's server when set, else an embedded one for this session."""
    url = os.environ.get("RECEIVER_TEST_DATABASE_URL")
    if url:
        yield PostgresServer(url)
        return
    # Not under pytest's base temp: a second pytest run rotates old base temps away,
    # and would delete this server's data under it while it runs.
    folder = Path(tempfile.mkdtemp(prefix="receiver-test-postgres-"))
    server = start_embedded(folder, cleanup="delete")
    try:
        yield PostgresServer(server.get_uri("postgres"))
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database(postgres: PostgresServer) -> Iterator[str]:
    """A database migrated to head, cloned by every test that needs one."""
    name = f"receiver_template_{uuid.uuid4().hex[:12]}"
    postgres.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate.upgrade(postgres.url_for(name))
        yield name
    finally:
        postgres.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(postgres: PostgresServer, template_database: str) -> Iterator[str]:
    """A fresh database at the schema's head, for this test alone."""
    yield from _clone(postgres, template_database, "receiver_test")


@pytest.fixture
def empty_database_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = f"receiver_empty_{uuid.uuid4().hex[:12]}"
    postgres.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres.url_for(name)
    finally:
        postgres.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path) -> SettingsFactory:
    """Settings for this test's database; by default authenticated by a URL token."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": database_url,
            "data_dir": tmp_path / "data",
            "callr_url_token": TEST_URL_TOKEN,
            "log_format": "json",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def another_database_url(postgres: PostgresServer, template_database: str) -> Iterator[str]:
    """A second fresh database at the schema's head: where a clean run goes, to compare."""
    yield from _clone(postgres, template_database, "receiver_other")


def _clone(postgres: PostgresServer, template: str, prefix: str) -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    postgres.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield postgres.url_for(name)
    finally:
        postgres.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
