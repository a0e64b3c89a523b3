"""Point-in-time recovery of an external PostgreSQL, as docs/operations.md tells it: WAL
archived, a base backup, then the database recovered to the moment before a mistake,
and the receiver served on it.

A primary of the test's own (initdb) with `archive_mode = on`; the receiver stores
events on it; `pg_basebackup` before them; recovery with `restore_command` and
`recovery_target_time` into a server on another port.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from receiver.app import create_app
from receiver.db import migrate
from receiver.status import Status
from testkit.callr_events import Step, v1_event
from testkit.cluster import Server, cluster_folder, execute, server_user
from testkit.support import running
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"


async def test_the_database_recovers_to_the_moment_before_a_mistake(
    make_settings: SettingsFactory,
) -> None:
    with cluster_folder() as root:
        archive = root / "archive"
        archive.mkdir()
        if (user := server_user()) is not None:
            shutil.chown(archive, user)
        primary = Server(root, "primary")
        primary.init()
        primary.configure(archive_mode="on", archive_command=f"cp %p {archive}/%f")
        primary.start()
        try:
            await execute(primary.url(), "CREATE DATABASE receiver")
            url = primary.url("receiver")
            await asyncio.to_thread(migrate.upgrade, url)
            base = Server(root, "recovered")
            primary.run(
                "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                "-D", str(base.data), "-X", "stream", "--checkpoint=fast",
            )  # fmt: skip

            kept = await _events(make_settings, url, "kept", 5)
            moment = await _now(url)
            await asyncio.sleep(1.0)
            lost = await _events(make_settings, url, "mistake", 5)
            await execute(url, "DELETE FROM handlers")  # the mistake, for good measure
            await execute(primary.url(), "SELECT pg_switch_wal()")
            await asyncio.sleep(1.0)  # archived
        finally:
            primary.stop("immediate")

        base.configure(
            port=str(base.port),
            restore_command=f"cp {archive}/%f %p",
            recovery_target_time=moment,
            recovery_target_action="promote",
        )
        (base.data / "recovery.signal").touch()
        if base.user is not None:
            shutil.chown(base.data / "recovery.signal", base.user)
        base.start()
        try:
            recovered = base.url("receiver")
            await asyncio.to_thread(migrate.upgrade, recovered)
            conn = await asyncpg.connect(recovered)
            try:
                ids = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM events")}
            finally:
                await conn.close()
            assert ids == set(kept), (sorted(ids), kept, lost)
            # And the receiver serves on it: what CALLR sends again is a duplicate.
            settings = make_settings(database_url=recovered)
            async with running(create_app(settings)) as client:
                assert (await client.get("/readyz")).status_code == 200
                again = await client.post(WEBHOOK, content=_event(kept[0]))
                assert again.json()["result"] == "duplicate"
        finally:
            base.stop("immediate")


def _event(event_id: str) -> bytes:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    return v1_event(event_id, f"{event_id}-sms", [Step(Status.CREATED, at)])


async def _events(make_settings: SettingsFactory, url: str, name: str, count: int) -> list[str]:
    ids = [f"{name}-{n}" for n in range(count)]
    async with running(create_app(make_settings(database_url=url))) as client:
        for event_id in ids:
            answer = await client.post(WEBHOOK, content=_event(event_id))
            assert answer.status_code == 200, answer.text
    return ids


async def _now(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        moment: str = await conn.fetchval("SELECT now()::text")
        return moment
    finally:
        await conn.close()
