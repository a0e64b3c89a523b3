from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from receiver.db.engine import create_pool
from receiver.ingest.writer import DatabaseUnavailable, GroupCommitWriter
from receiver.projection.projector import Projector
from receiver.projection.store import Result
from receiver.status import Status
from testkit.callr_events import lifecycle, mo_event, v1_event, v2_event
from testkit.support import example, fetch, incoming, until_a_lock_wait, with_fields


async def test_one_unstorable_event_does_not_fail_its_batch(database_url: str) -> None:
    pool = await create_pool(database_url, size=2, command_timeout=10)
    writer = GroupCommitWriter(pool, batch_max=100, concurrency=1, queue_max=100)
    good = [incoming(with_fields(example("v1-sms.mo"), event_id=f"good-{n}")) for n in range(5)]
    # PostgreSQL refuses NUL in text: this event parses but cannot be stored as it is.
    poison = incoming(with_fields(example("v1-sms.mo"), event_id="poison"), type="sms.mo\x00")
    await writer.start()
    try:
        outcomes = await asyncio.gather(*(writer.submit(item) for item in [*good, poison]))
    finally:
        await writer.stop()
        await pool.close()
    assert [o.result for o in outcomes] == [Result.STORED] * 5 + [Result.INVALID]
    rows = await fetch(database_url, "SELECT event_id, state, reason, body FROM events")
    by_id = {row["event_id"]: row for row in rows}
    assert {f"good-{n}" for n in range(5)} | {"poison"} == set(by_id)
    assert by_id["poison"]["state"] == "invalid"
    assert by_id["poison"]["reason"].startswith("the event could not be stored (22")
    assert by_id["poison"]["body"] == poison.body


async def test_a_batch_refused_for_the_databases_sake_is_not_split_into_invalid_events(
    database_url: str,
) -> None:
    # A table missing (a migration half done) is nobody's event's fault: the requests
    # are refused (503, CALLR retries) and no event is stored as invalid for it.
    pool = await create_pool(database_url, size=2, command_timeout=10)
    writer = GroupCommitWriter(pool, batch_max=100, concurrency=1, queue_max=100)
    items = [incoming(with_fields(example("v1-sms.mo"), event_id=f"e-{n}")) for n in range(4)]
    await fetch(database_url, "ALTER TABLE deliveries RENAME TO deliveries_away")
    await writer.start()
    try:
        with capture_logs() as logs:
            outcomes = await asyncio.gather(
                *(writer.submit(item) for item in items), return_exceptions=True
            )
    finally:
        await writer.stop()
        await pool.close()
        await fetch(database_url, "ALTER TABLE deliveries_away RENAME TO deliveries")
    assert all(isinstance(outcome, DatabaseUnavailable) for outcome in outcomes), outcomes
    assert await fetch(database_url, "SELECT 1 FROM events") == []
    # Said once for the batch, not once for each event as if each were at fault.
    assert [entry["event"] for entry in logs] == ["batch_refused"]


async def test_an_unreachable_database_fails_the_submission(tmp_path: object) -> None:
    pool = await create_pool(
        "postgresql://nobody@/receiver?host=/nonexistent-socket-dir", size=2, command_timeout=2
    )
    writer = GroupCommitWriter(pool, batch_max=10, concurrency=1, queue_max=10)
    await writer.start()
    try:
        with pytest.raises(DatabaseUnavailable):
            await writer.submit(incoming(example("v1-sms.mo")))
    finally:
        await writer.stop()
        await pool.close()


async def test_stop_commits_what_was_already_submitted(database_url: str) -> None:
    pool = await create_pool(database_url, size=2, command_timeout=10)
    writer = GroupCommitWriter(pool, batch_max=3, concurrency=1, queue_max=100)
    await writer.start()
    items = [incoming(with_fields(example("v1-sms.mo"), event_id=f"e-{n}")) for n in range(20)]
    pending = [asyncio.create_task(writer.submit(item)) for item in items]
    await asyncio.sleep(0)  # every submission is queued before the stop
    await writer.stop()
    await pool.close()
    assert all(task.done() and task.result().result is Result.STORED for task in pending)
    assert len(await fetch(database_url, "SELECT 1 FROM events")) == 20


# The tables that grow with the traffic: a plan that scans one of them whole costs
# more with every event stored.
# (The projector's queue is read from the head of its key, in order, LIMIT rows: an
# index scan with no condition, which reads no more than it returns.)
_GROWING = {"events", "deliveries", "messages", "transitions", "observations", "forwards"}


def _whole_table_reads(plan: dict[str, Any], table: str | None = None) -> list[str]:
    """The nodes of an EXPLAIN (FORMAT JSON) plan that read a growing table without a key.

    `table`: the growing table whose bitmap this part of the plan builds.
    """
    node = plan["Node Type"]
    if plan.get("Relation Name") in _GROWING and node != "ModifyTable":
        table = plan["Relation Name"]
        # A bitmap heap scan reads what its index scans below it found.
        if node != "Bitmap Heap Scan" and "Index Cond" not in plan:
            return [f"{node} on {table}"]
    if node == "Bitmap Index Scan" and table is not None and "Index Cond" not in plan:
        return [f"{node} on {plan['Index Name']}"]
    inherited = table if node in ("Bitmap Heap Scan", "BitmapAnd", "BitmapOr") else None
    children = plan.get("Plans", [])
    return [found for child in children for found in _whole_table_reads(child, inherited)]


async def test_batches_reuse_plans_made_on_empty_tables_that_look_rows_up_by_key(
    database_url: str,
) -> None:
    """A batch plans nothing: the writer's statement and the projector's keep the plans that
    the first batch made.

    Made while every table is empty, they must still read rows by key: a plan that
    scans a small table whole would be kept as the table grows.
    """
    # One connection each, as the app makes them: the writer's pool keeps generic plans
    # for the session, the projector sets them for its transactions.
    writer_pool = await create_pool(
        database_url, size=1, command_timeout=10, session_state=False, generic_plans=True
    )
    pool = await create_pool(database_url, size=1, command_timeout=10)
    writer = GroupCommitWriter(writer_pool, batch_max=100, concurrency=1, queue_max=100)
    projector = Projector(pool)
    await writer.start()
    try:
        for batch in range(3):
            sms = f"SMS{batch}"
            bodies = [
                v2_event(f"v2-{batch}", sms, lifecycle(Status.CREATED, Status.SENT)),
                # No history: its status is explained by no reported step (derived).
                v1_event(
                    f"v1-{batch}",
                    sms,
                    lifecycle(Status.CREATED, Status.SENT, Status.DELIVERED),
                    with_history=False,
                ),
                # No user_data: routed by the latest MT sent to its sender.
                mo_event(f"mo-{batch}", f"MO{batch}", sender="+33612345678"),
            ]
            items = [incoming(body) for body in bodies]
            retry = incoming(with_fields(bodies[0], attempt=1))
            await asyncio.gather(*(writer.submit(item) for item in [*items, retry]))
            assert await projector.drain() == 3
    finally:
        await writer.stop()
    try:
        writes = await kept_plans(writer_pool, ["INSERT INTO events"])
        # The writer's: events, deliveries and the queue in one statement, one a batch.
        assert (
            writes["INSERT INTO events"]["generic_plans"],
            writes["INSERT INTO events"]["custom_plans"],
        ) == (3, 0)
        projections = await kept_plans(
            pool,
            [
                "DELETE FROM projection_pending",
                "INSERT INTO messages",
                "WITH p AS",
                "WITH mo AS",  # the replies' forwards
                "AS c(sms_id text, before text",  # the status callbacks
            ],
        )
        for first, row in projections.items():
            # One claim a batch: a drain that finds no partition with work claims nothing.
            assert (row["generic_plans"], row["custom_plans"]) == (3, 0), first
            if first == "WITH mo AS":
                # An MO's latest MT: by its sender's number, not by every SMS of
                # the routing window.
                indexes = set(re.findall(r'"Index Name": "(\w+)"', json.dumps(row["plan"])))
                assert "ix_messages_to_number_created_at" in indexes
                assert "ix_messages_created_at_outcomes" not in indexes
    finally:
        await pool.close()
        await writer_pool.close()


async def kept_plans(pool: Any, firsts: list[str]) -> dict[str, dict[str, Any]]:
    """The statements on the pool's one connection that contain each of `firsts`, with the
    generic plan each keeps; a plan that reads a growing table whole fails the test."""
    async with pool.acquire() as conn, conn.transaction():
        statements = await conn.fetch(
            "SELECT name, statement, cardinality(parameter_types) AS params,"
            " generic_plans, custom_plans FROM pg_prepared_statements"
        )
        found = {
            first: dict(row) for row in statements for first in firsts if first in row["statement"]
        }
        assert set(found) == set(firsts), [r["statement"][:60] for r in statements]
        # Shown as the batch runs it: its generic plan, the one kept.
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        for first, row in found.items():
            nulls = ", ".join(["NULL"] * row["params"])
            (document,) = json.loads(
                await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {row['name']}({nulls})")
            )
            assert _whole_table_reads(document["Plan"]) == [], first
            row["plan"] = document
    return found


@pytest.mark.parametrize("concurrency", [2, 3])
async def test_a_batch_stuck_on_a_lock_does_not_hold_up_the_others(
    database_url: str, concurrency: int
) -> None:
    """While one batch waits for an event that another transaction is storing, others commit."""
    pool = await create_pool(database_url, size=4, command_timeout=30)
    writer = GroupCommitWriter(pool, batch_max=100, concurrency=concurrency, queue_max=100)
    await writer.start()
    blocker = await asyncpg.connect(database_url)
    standby_before = REGISTRY.get_sample_value("receiver_standby_batches_total") or 0
    try:
        delivered = lifecycle(Status.CREATED, Status.SENT, Status.DELIVERED)
        async with blocker.transaction():
            # Another receiver storing the same event (a replay, say), not yet committed:
            # the batch's insert waits to know whether it wins.
            await blocker.execute(
                "INSERT INTO events (event_id, received_at, state, fingerprint, body)"
                " VALUES ('stuck', now(), 'unhandled', '\\x00', '{}')"
            )
            stuck = asyncio.create_task(
                writer.submit(incoming(v2_event("stuck", "LOCKED", delivered)))
            )
            await until_a_lock_wait(blocker)
            others = [incoming(v2_event(f"other-{n}", f"FREE{n}", delivered)) for n in range(5)]
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(writer.submit(item) for item in others)), timeout=5
            )
            assert not stuck.done()
            await blocker.execute("ROLLBACK")
            await blocker.execute("BEGIN")
        assert (await stuck).result is Result.STORED
    finally:
        await blocker.close()
        await writer.stop()
        await pool.close()
    assert [o.result for o in outcomes] == [Result.STORED] * 5
    # Counted, for whoever watches the service: a batch waited that long.
    standby = REGISTRY.get_sample_value("receiver_standby_batches_total") or 0
    assert standby - standby_before >= 1
