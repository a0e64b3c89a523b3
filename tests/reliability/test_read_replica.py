"""Reads on a replica: the query API's pages read a real streaming standby while it is in
time, the primary past the maximum lag or when it is gone, and the replica again once
it has caught up.

A primary (initdb) and its standby (pg_basebackup) on ports of their own; the
standby's replay paused with `pg_wal_replay_pause()` to make it fall behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from receiver.app import create_app
from receiver.db import migrate
from receiver.db.engine import create_pool
from receiver.db.replica import Reads, ReplicaState
from receiver.status import Status
from testkit.callr_events import Step, v1_event
from testkit.cluster import Server, cluster_folder, execute
from testkit.support import running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

READ = "read-token-0123456789abcdef"
WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"


async def test_reads_follow_the_replica_while_it_is_in_time(
    make_settings: SettingsFactory,
) -> None:
    with cluster_folder() as root:
        primary, standby = Server(root, "primary"), Server(root, "standby")
        primary.init()
        primary.start()
        try:
            await execute(primary.url(), "CREATE DATABASE receiver")
            await asyncio.to_thread(migrate.upgrade, primary.url("receiver"))
            standby.standby_of(primary)
            standby.start()
            settings = make_settings(
                database_url=primary.url("receiver"),
                read_database_url=standby.url("receiver"),
                read_replica_max_lag=timedelta(seconds=3),
                api_tokens=READ,
            )
            async with running(create_app(settings)) as client:
                await _store(client, "first")
                await _until(client, lambda s: s["used"] and s["lag_seconds"] == 0)
                await _until_listed(client, "first")

                # The standby stops replaying: a new SMS is on the primary, not on the
                # pages, and the lag shows.
                await execute(standby.url(), "SELECT pg_wal_replay_pause()")
                await _store(client, "second")
                replica = (await _status(client))["read_replica"]
                assert replica["used"] is True, replica
                assert "second" not in await _listed(client)
                # Past the maximum lag, the pages read the primary, and say why.
                replica = await _until(client, lambda s: not s["used"], seconds=15)
                assert replica["lag_seconds"] > 3, replica
                assert "behind, past 3 s" in replica["reason"], replica
                assert "second" in await _listed(client)

                # Caught up, the replica is used again.
                await execute(standby.url(), "SELECT pg_wal_replay_resume()")
                await _until(client, lambda s: s["used"], seconds=15)
                assert "second" in await _listed(client)

                # Gone, the primary takes the reads.
                standby.stop("immediate")
                replica = await _until(client, lambda s: not s["used"], seconds=15)
                assert "does not answer" in replica["reason"], replica
                assert {"first", "second"} <= await _listed(client)
                metrics = (await client.get("/metrics")).text
                assert "receiver_read_replica_lag_seconds -1.0" in metrics
        finally:
            for server in (standby, primary):
                if server.running():
                    server.stop("immediate")


async def _store(client: httpx.AsyncClient, name: str) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    body = v1_event(f"evt-{name}", name, [Step(Status.CREATED, at)], user_data=name)
    answer = await client.post(WEBHOOK, content=body)
    assert answer.status_code == 200, answer.text
    await until_projected(client)


async def _status(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/api/v1/status", headers={"authorization": f"Bearer {READ}"})
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


async def _until(
    client: httpx.AsyncClient, condition: Callable[[dict[str, Any]], bool], seconds: float = 10.0
) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        while True:
            replica = (await _status(client))["read_replica"]
            assert isinstance(replica, dict)
            if condition(replica):
                return replica
            await asyncio.sleep(0.2)


async def _listed(client: httpx.AsyncClient) -> set[str]:
    answer = await client.get("/api/v1/messages", headers={"authorization": f"Bearer {READ}"})
    assert answer.status_code == 200, answer.text
    return {item["user_data"] for item in answer.json()["items"]}


async def _until_listed(client: httpx.AsyncClient, name: str) -> None:
    async with asyncio.timeout(10):
        while True:
            if name in await _listed(client):
                return
            await asyncio.sleep(0.1)


async def test_a_replica_cut_off_from_its_primary_is_left_though_its_lag_reads_0() -> None:
    """A standby that receives nothing has replayed all it got: its lag reads 0 while
    the primary goes on without it. Its WAL receiver tells."""
    with cluster_folder() as root:
        primary, standby = Server(root, "primary"), Server(root, "standby")
        primary.init()
        primary.start()
        try:
            standby.standby_of(primary)
            standby.start()
            pool = await create_pool(standby.url(), size=2, command_timeout=5)
            try:
                reads = Reads(pool, pool, max_lag=30)
                state = await _until_used(reads, True)
                primary.stop("immediate")
                state = await _until_used(reads, False)
                assert state.reason is not None
                assert "receives nothing from the primary" in state.reason, state
            finally:
                await pool.close()
        finally:
            for server in (standby, primary):
                if server.running():
                    server.stop("immediate")


async def _until_used(reads: Reads, used: bool) -> ReplicaState:
    """The replica's state once `reads` uses it (or leaves it), checked every 0.2 s."""
    async with asyncio.timeout(15):
        while True:
            state = await reads.check()
            assert state is not None
            if state.used is used:
                return state
            await asyncio.sleep(0.2)
