"""Upgrades without a gap: each migration says whether the release before runs on what it
leaves, the migrations record it, and a release stays ready on a newer schema it runs on.

The "next release" is this code copied to a folder of its own with one more
migration, run as its own processes (`receiver migrate`, `receiver serve`) against a
real PostgreSQL, while this release serves in the test's process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

import receiver
from receiver.app import create_app
from receiver.db import migrate
from receiver.status import Status
from testkit.callr_events import Step, v1_event
from testkit.support import fetch, running
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.test_cli import free_port, start_serve, wait_ready

WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"
NEXT = "next_release"


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.alembic_config(""))


def test_every_migration_says_whether_the_release_before_runs_on_what_it_leaves() -> None:
    silent = [
        each.revision
        for each in _script().walk_revisions()
        if not isinstance(getattr(each.module, "backward_compatible", None), bool)
    ]
    assert silent == []


def test_a_migration_that_does_not_say_counts_as_incompatible(tmp_path: Path) -> None:
    script = _script()
    head = migrate.head_revision()
    # Back from the head while each says yes; the first no (or silence) stops it.
    walked, migration = head, script.get_revision(head)
    while migration is not None and migration.module.backward_compatible:
        assert isinstance(migration.down_revision, str)
        walked, migration = migration.down_revision, script.get_revision(migration.down_revision)
    assert migrate.oldest_code(script, head) == walked
    # Today: 0019 dropped what the release before relied on; all since only add.
    assert walked == "0019"
    folder = _next_release(tmp_path, compatible=None)
    copied = ScriptDirectory(str(_migrations_of(folder)))
    assert migrate.oldest_code(copied, NEXT) == NEXT


async def test_migrate_records_the_oldest_code_for_each_schema_it_leaves(
    empty_database_url: str,
) -> None:
    await asyncio.to_thread(migrate.upgrade, empty_database_url, "0022")
    # The table comes with 0023: the run that makes it records its own schema first.
    await asyncio.to_thread(migrate.upgrade, empty_database_url)
    await asyncio.to_thread(migrate.upgrade, empty_database_url)  # nothing to do: same record
    rows = await fetch(empty_database_url, "SELECT revision, oldest_code FROM schema_compatibility")
    assert [tuple(row.values()) for row in rows] == [(migrate.head_revision(), "0019")]


@pytest.mark.slow
async def test_this_release_serves_through_a_compatible_migration_and_beside_the_next(
    make_settings: SettingsFactory, database_url: str, tmp_path: Path
) -> None:
    folder = _next_release(tmp_path, compatible=True)
    settings = make_settings(api_tokens=_READ)
    async with running(create_app(settings)) as client:
        answers, ready = await _during(client, _command(folder, database_url, "migrate"))
        # Every webhook answered 2xx and /readyz 200 all along, before and after.
        assert len(answers) >= 10
        assert set(answers) == {200}, answers
        assert set(ready) == {200}, ready
        after = await client.get("/readyz")
        assert (after.status_code, after.json()["schema"]) == (200, NEXT)
        status = await client.get("/api/v1/status", headers=_bearer())
        assert status.status_code == 200
    rows = await fetch(database_url, "SELECT revision, oldest_code FROM schema_compatibility")
    assert (NEXT, "0019") in [tuple(row.values()) for row in rows]

    # Both releases serve side by side: the next one in a process of its own.
    port = free_port()
    process = start_serve(
        folder,
        port,
        RECEIVER_DATABASE_URL=database_url,
        RECEIVER_CALLR_URL_TOKEN=TEST_URL_TOKEN,
        RECEIVER_SENDER="false",
    )
    try:
        await asyncio.to_thread(wait_ready, port, process)
        settings = make_settings(api_tokens=_READ)
        async with (
            running(create_app(settings)) as this,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as nxt,
        ):
            for n, each in enumerate((this, nxt, this, nxt)):
                answer = await each.post(WEBHOOK, content=_event(f"side-{n}"))
                assert answer.status_code == 200, answer.text
            now = (await this.get("/api/v1/status", headers=_bearer())).json()
            assert (now["schema"], now["schema_compatible"]) == (NEXT, True)
            assert now["schema_head"] == migrate.head_revision()
            assert (await nxt.get("/readyz")).json()["schema"] == NEXT
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.communicate, timeout=30)


@pytest.mark.slow
async def test_this_release_steps_out_of_the_service_after_an_incompatible_migration(
    make_settings: SettingsFactory, database_url: str, tmp_path: Path
) -> None:
    folder = _next_release(tmp_path, compatible=False)
    migrated = await asyncio.to_thread(_command(folder, database_url, "migrate"))
    assert migrated.returncode == 0, migrated.stderr
    async with running(create_app(make_settings(api_tokens=_READ))) as client:
        ready = await client.get("/readyz")
        status = (await client.get("/api/v1/status", headers=_bearer())).json()
    head = migrate.head_revision()
    assert ready.status_code == 503
    assert ready.json()["reason"] == (
        f"the database is at schema revision {NEXT}, which this code ({head}) does not"
        f" know: a newer release migrated it for code from {NEXT} on; run that release"
    )
    assert (status["schema"], status["schema_head"], status["schema_compatible"]) == (
        NEXT,
        head,
        False,
    )
    # And this release's commands refuse it, `migrate` included, saying the same.
    env = {"RECEIVER_DATABASE_URL": database_url}
    for command in (("migrate",), ("handlers", "list")):
        result = await asyncio.to_thread(_command(Path.cwd(), database_url, *command, env=env))
        assert result.returncode == 1, result.stderr
        assert "a newer release migrated it for code from next_release on" in result.stderr


# ---------------------------------------------------------------------------- helpers

_READ = "read-token-0123456789abcdef"


def _bearer() -> dict[str, str]:
    return {"authorization": f"Bearer {_READ}"}


def _event(name: str) -> bytes:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    return v1_event(f"evt-{name}", f"sms{name}", [Step(Status.CREATED, at)])


async def _during(client: httpx.AsyncClient, work: Command) -> tuple[list[int], list[int]]:
    """Webhooks and /readyz, one after the other, for as long as `work` runs (in a
    thread), and a little after: the status codes of each."""
    answers: list[int] = []
    ready: list[int] = []
    done = asyncio.Event()

    async def traffic() -> None:
        n = 0
        while not done.is_set() or n < 10:
            answers.append((await client.post(WEBHOOK, content=_event(f"during-{n}"))).status_code)
            ready.append((await client.get("/readyz")).status_code)
            n += 1
            await asyncio.sleep(0.02)

    task = asyncio.create_task(traffic())
    try:
        result = await asyncio.to_thread(work)
        assert result.returncode == 0, result.stderr
    finally:
        done.set()
        await task
    return answers, ready


Command = Callable[[], "subprocess.CompletedProcess[str]"]


def _command(
    folder: Path, database_url: str, *args: str, env: dict[str, str] | None = None
) -> Command:
    """`receiver ARGS` as the release in `folder` runs it, ready to be called."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "receiver", *args],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "RECEIVER_DATABASE_URL": database_url, **(env or {})},
            check=False,
        )

    return run


def _next_release(tmp_path: Path, *, compatible: bool | None) -> Path:
    """This code in a folder of its own with one more migration, which declares
    `backward_compatible = compatible` (None: declares nothing)."""
    folder = tmp_path / "next"
    package = Path(receiver.__file__).resolve().parent
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(package, folder / "receiver", ignore=ignore)
    migrations = migrate.migrations_dir()
    if not migrations.is_relative_to(package):  # a source checkout: alembic/ beside it
        shutil.copytree(migrations, folder / "alembic", ignore=ignore)
    declared = "" if compatible is None else f"backward_compatible = {compatible}\n"
    (_migrations_of(folder) / "versions" / "9999_next_release.py").write_text(
        f'''"""the next release's migration"""

import sqlalchemy as sa
from alembic import op

revision = "{NEXT}"
down_revision = "{migrate.head_revision()}"
branch_labels = None
depends_on = None
{declared}

def upgrade() -> None:
    op.create_table("next_release_notes", sa.Column("id", sa.Integer(), primary_key=True))
    op.add_column("events", sa.Column("next_release_note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("events", "next_release_note")
    op.drop_table("next_release_notes")
'''
    )
    return folder


def _migrations_of(folder: Path) -> Path:
    package = Path(receiver.__file__).resolve().parent
    migrations = migrate.migrations_dir()
    if migrations.is_relative_to(package):
        return folder / "receiver" / migrations.relative_to(package)
    return folder / "alembic"
