"""Behind PgBouncer in transaction mode: the receiver's pools go through the pooler,
what keeps a session (LISTEN, the migration's lock, a command's connection) goes to the
server itself (RECEIVER_DIRECT_DATABASE_URL).

A server of the test's own (initdb) and a real PgBouncer in front of it, configured as
most installations are (testkit/pooler.py), with fewer server connections than the
receiver's pools ask for, so that transactions do move between server connections.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from receiver.app import create_app
from receiver.db.engine import create_pool
from receiver.replay.callr import reconcile_turn
from receiver.status import Status
from testkit.callr_events import lifecycle, mo_event, v1_event
from testkit.cluster import Server, cluster_folder, execute
from testkit.fake_callr import fake_callr
from testkit.handler_server import handler_server, wait_for
from testkit.pooler import PgBouncer, pgbouncer
from testkit.support import fetch, running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.forwarding.conftest import register
from tests.test_cli import receiver_command

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.skipif(
        pgbouncer() is None and not os.environ.get("CI"),
        reason="pgbouncer is not installed (scripts/system-packages installs it)",
    ),
]

WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"
SEND = "send-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
DELIVERED = lifecycle(Status.CREATED, Status.DELIVERED)


@dataclass
class Pooled:
    server: Server
    bouncer: PgBouncer

    @property
    def direct(self) -> str:
        return self.server.url("receiver")

    @property
    def pooled(self) -> str:
        return self.bouncer.url("receiver")

    def environment(self) -> dict[str, str]:
        return {"RECEIVER_DATABASE_URL": self.pooled, "RECEIVER_DIRECT_DATABASE_URL": self.direct}


@pytest.fixture(scope="module")
def pooled() -> Iterator[Pooled]:
    """An empty database `receiver`, with PgBouncer (3 server connections) in front."""
    with cluster_folder() as root:
        server = Server(root, "server")
        server.init()
        server.start()
        bouncer = PgBouncer(root, server.port, pool_size=3)
        try:
            asyncio.run(execute(server.url(), "CREATE DATABASE receiver"))
            bouncer.start()
            yield Pooled(server, bouncer)
        finally:
            bouncer.stop()
            server.stop("immediate")


@pytest.fixture(scope="module")
def migrated(pooled: Pooled) -> Pooled:
    """`receiver migrate`, as a deployment runs it: both URLs set."""
    done = receiver_command("migrate", env=pooled.environment())
    assert done.returncode == 0, done.stderr
    return pooled


def test_migrate_runs_with_the_pooler_and_the_server_set(migrated: Pooled) -> None:
    again = receiver_command("migrate", env=migrated.environment())
    assert again.returncode == 0, again.stderr
    rows = asyncio.run(fetch(migrated.direct, "SELECT version_num FROM alembic_version"))
    assert len(rows) == 1


@pytest.fixture
async def two_apps(
    migrated: Pooled, make_settings: SettingsFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, dict[str, Any]]]:
    """Two receivers on the pooler, each with its projector, dispatcher and sender, and
    the fake CALLR they send to."""
    async with fake_callr() as callr:
        settings = make_settings(
            database_url=migrated.pooled,
            direct_database_url=migrated.direct,
            send_tokens=SEND,
            api_tokens=READ,
            dispatch_poll_interval=0.2,
            forward_backoff_base=0.05,
            **callr.settings(),
        )
        async with running(create_app(settings)) as one, running(create_app(settings)) as two:
            yield one, two, {"callr": callr}


async def test_webhooks_replies_and_sends_through_the_pooler(
    migrated: Pooled,
    two_apps: tuple[httpx.AsyncClient, httpx.AsyncClient, dict[str, Any]],
) -> None:
    one, two, parts = two_apps
    callr = parts["callr"]
    async with handler_server() as handler:
        await register(migrated.direct, user_data="pool-42", url=handler.url("/replies"))
        # Delivery reports to both receivers at once: two projectors, on one pooler.
        bodies = [v1_event(f"pooled-{n}", f"SMS{n:06d}", DELIVERED) for n in range(200)]
        answers = await asyncio.gather(
            *((one if n % 2 else two).post(WEBHOOK, content=body) for n, body in enumerate(bodies))
        )
        assert {a.status_code for a in answers} == {200}, {a.text for a in answers}
        # The same events again: duplicates, through the other receiver.
        again = await asyncio.gather(
            *((two if n % 2 else one).post(WEBHOOK, content=b) for n, b in enumerate(bodies[:20]))
        )
        assert {a.json()["result"] for a in again} == {"duplicate"}, [a.text for a in again]
        reply = mo_event("pooled-mo", "MO000042", sender="+33611111111", user_data="pool-42")
        assert (await one.post(WEBHOOK, content=reply)).status_code == 200
        await until_projected(migrated.direct)
        await wait_for(lambda: len(handler.on("/replies")) == 1)
        assert handler.on("/replies")[0].json["event_id"] == "pooled-mo"

        sent = await two.post(
            "/api/v1/sms",
            json={"to": "+33612345678", "text": "pooled", "user_data": "pool-42"},
            headers={"authorization": f"Bearer {SEND}"},
        )
        assert sent.status_code == 202, sent.text
        await wait_for(lambda: len(callr.created) == 1)
        state = await _until_sent(one, sent.json()["id"])
    assert state == "accepted"
    stored = await fetch(
        migrated.direct,
        "SELECT (SELECT count(*) FROM events WHERE event_id LIKE 'pooled-%') AS events,"
        " (SELECT count(*) FROM messages WHERE direction = 'outbound' AND status = 'delivered')"
        " AS delivered",
    )
    assert stored == [{"events": 201, "delivered": 200}]
    listed = await one.get("/api/v1/messages?limit=5", headers={"authorization": f"Bearer {READ}"})
    assert listed.status_code == 200, listed.text


async def _until_sent(client: httpx.AsyncClient, send_id: str) -> str:
    async with asyncio.timeout(20):
        while True:
            answer = await client.get(
                f"/api/v1/sms/{send_id}", headers={"authorization": f"Bearer {READ}"}
            )
            state: str = answer.json()["state"]
            if state not in ("queued", "submitted"):
                return state
            await asyncio.sleep(0.1)


async def test_without_the_direct_url_the_pooler_refuses_the_pools(
    migrated: Pooled, make_settings: SettingsFactory
) -> None:
    """The control: pools made for the server itself are refused by the pooler, so the
    test above does run through it."""
    settings = make_settings(database_url=migrated.pooled)
    async with running(create_app(settings)) as client:
        answer = await client.post(WEBHOOK, content=v1_event("refused-1", "SMS999999", DELIVERED))
    assert answer.status_code == 503, answer.text


async def test_one_reconcile_at_a_time_with_its_lock_on_the_server(migrated: Pooled) -> None:
    """A session's lock, held for a whole reconcile: on a connection to the server itself,
    where the pooler would hand the unlock to another server connection."""
    pool = await create_pool(migrated.pooled, size=2, command_timeout=5, pooled=True)
    try:
        async with (
            reconcile_turn(pool, migrated.direct) as first,
            reconcile_turn(pool, migrated.direct) as second,
        ):
            assert (first, second) == (True, False)
        async with reconcile_turn(pool, migrated.direct) as after:
            assert after is True
    finally:
        await pool.close()
