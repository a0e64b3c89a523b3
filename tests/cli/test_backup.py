"""`receiver backup` and `receiver restore`: a backup restores into a working service.

A real PostgreSQL, the commands run as processes (PostgreSQL's own pg_dump and
pg_restore behind them), a real handler server on loopback and the CALLR double.
"""

from __future__ import annotations

import asyncio
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from receiver.api.tokens import add_token
from receiver.app import create_app
from receiver.db import migrate
from receiver.status import Status
from testkit.callr_events import Step, v1_event
from testkit.fake_callr import FakeCallr, fake_callr
from testkit.handler_server import HandlerServer, always, handler_server, wait_for
from testkit.support import example, fetch, running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.forwarding.conftest import FAST, register
from tests.sending.test_sending import QUICK, TO, post, until_state
from tests.test_cli import receiver_command

WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"
# What a restore must give back, row for row.
TABLES = {
    "events": "event_id",
    "deliveries": "id",
    "messages": "sms_id",
    "transitions": "id",
    "forwards": "id",
    "forward_attempts": "id",
    "handlers": "id",
    "api_tokens": "name",
    "sends": "id",
    "deployment_keys": "id",
}


def receiver(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return receiver_command(
        *args,
        env={"RECEIVER_DATABASE_URL": database_url, "RECEIVER_CALLR_URL_TOKEN": TEST_URL_TOKEN},
    )


async def rows(database_url: str) -> dict[str, list[dict[str, object]]]:
    return {
        # The names are this module's constants.
        table: await fetch(database_url, f"SELECT * FROM {table} ORDER BY {order}")  # noqa: S608
        for table, order in TABLES.items()
    }


async def test_a_backup_restores_into_a_service_that_goes_on_where_it_stopped(
    make_settings: SettingsFactory,
    database_url: str,
    empty_database_url: str,
    tmp_path: Path,
) -> None:
    async with handler_server() as handler, fake_callr() as callr:
        await _fill(make_settings, database_url, handler, callr)
        before = await rows(database_url)
        assert {f["state"] for f in before["forwards"]} == {"pending", "dead"}
        assert all(before[table] for table in TABLES), [t for t in TABLES if not before[t]]

        backup = tmp_path / "receiver.dump"
        made = await asyncio.to_thread(receiver, "backup", str(backup), database_url=database_url)
        assert made.returncode == 0, made.stderr
        assert f"(schema {migrate.head_revision()}) to {backup}" in made.stdout
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # it holds the secrets

        restored = await asyncio.to_thread(
            receiver, "restore", str(backup), database_url=empty_database_url
        )
        assert restored.returncode == 0, restored.stderr
        assert f"the schema is at {migrate.head_revision()}" in restored.stdout
        assert await rows(empty_database_url) == before

        # A service on the restored database: what CALLR sends again is a duplicate,
        # the forward that waited goes once, the dead one stays dead.
        handler.scripts["/replies"] = always(200)
        tried, dead = len(handler.on("/replies")), len(handler.on("/dead"))
        settings = make_settings(database_url=empty_database_url, **FAST)
        async with running(create_app(settings)) as client:
            again = await client.post(WEBHOOK, content=example("v1-sms.mo"))
            assert (again.status_code, again.json()["result"]) == (200, "duplicate")
            await wait_for(lambda: len(handler.on("/replies")) > tried, seconds=20)
            await asyncio.sleep(1.0)  # time for a second delivery, were there one
        assert len(handler.on("/replies")) == tried + 1
        assert len(handler.on("/dead")) == dead == 1
        states = await fetch(empty_database_url, "SELECT state FROM forwards ORDER BY id")
        assert sorted(s["state"] for s in states) == ["dead", "done"]


async def test_restore_refuses_a_database_that_holds_something_unless_forced(
    database_url: str, tmp_path: Path
) -> None:
    backup = tmp_path / "receiver.dump"
    made = await asyncio.to_thread(receiver, "backup", str(backup), database_url=database_url)
    assert made.returncode == 0, made.stderr
    again = await asyncio.to_thread(receiver, "backup", str(backup), database_url=database_url)
    assert again.returncode == 1
    assert "exists: give another path, or --force to replace it" in again.stderr

    refused = await asyncio.to_thread(receiver, "restore", str(backup), database_url=database_url)
    assert refused.returncode == 1
    assert "is not empty" in refused.stderr
    assert "give --force to replace what it holds" in refused.stderr
    forced = await asyncio.to_thread(
        receiver, "restore", "--force", str(backup), database_url=database_url
    )
    assert forced.returncode == 0, forced.stderr

    not_one = tmp_path / "notes.txt"
    not_one.write_text("not a backup\n")
    wrong = await asyncio.to_thread(receiver, "restore", str(not_one), database_url=database_url)
    assert (wrong.returncode, wrong.stderr) == (
        1,
        f"receiver restore: {not_one} is not a backup made by `receiver backup`\n",
    )


# ---------------------------------------------------------------------------- helpers


async def _fill(
    make_settings: SettingsFactory, database_url: str, handler: HandlerServer, callr: FakeCallr
) -> None:
    """Events, messages, a forward waiting for its retry and a dead one, handlers, a
    token and a send, by the service itself."""
    url = handler.url
    handler.scripts["/replies"] = always(503)
    handler.scripts["/dead"] = always(500)
    await register(database_url, user_data=None, default=True, url=url("/replies"), first_retry=2.0)
    await register(database_url, user_data="42", url=url("/dead"), attempts=1)
    conn = await asyncpg.connect(database_url)
    try:
        await add_token(conn, "dashboard", "read")
    finally:
        await conn.close()
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    settings = make_settings(**{**QUICK, **FAST}, **callr.settings())
    async with running(create_app(settings)) as client:
        # An MT with user_data 42, its recipient's reply (to the "42" handler, which
        # fails once and is done: dead), and a reply no MT explains (to the default
        # handler, which answers 503: it waits for a retry).
        mt = v1_event("evt-mt-1", "mt000001", [Step(Status.CREATED, at), Step(Status.SENT, at)])
        mo = v1_event("evt-mo-1", "mo000001", [Step(Status.DELIVERED, at)], inbound=True)
        for body in (mt, mo, example("v1-sms.mo")):
            answer = await client.post(WEBHOOK, content=body)
            assert answer.status_code == 200, answer.text
        sent = await post(client, {"to": TO, "text": "Votre code : 4821", "user_data": "otp-1"})
        assert sent.status_code == 202, sent.text
        await until_state(client, sent.json()["id"], "accepted")
        await until_projected(client)
        states = "SELECT state, attempts FROM forwards ORDER BY id"
        await wait_for_states(database_url, states)


async def wait_for_states(database_url: str, query: str) -> None:
    async with asyncio.timeout(20):
        while True:
            found = await fetch(database_url, query)
            if sorted(f["state"] for f in found) == ["dead", "pending"] and all(
                f["attempts"] >= 1 for f in found
            ):
                return
            await asyncio.sleep(0.1)
