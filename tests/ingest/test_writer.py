from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from receiver.callr.envelope import Envelope, parse_envelope
from receiver.db.engine import create_pool
from receiver.ingest.store import Incoming, Result
from receiver.ingest.writer import DatabaseUnavailable, GroupCommitWriter
from tests.support import example, fetch, with_fields


def incoming(body: bytes, **envelope_changes: Any) -> Incoming:
    parsed = parse_envelope(body)
    assert isinstance(parsed, Envelope)
    return Incoming(
        parsed=parsed._replace(**envelope_changes),
        body=body,
        received_at=datetime.now(UTC),
        headers={},
        remote_addr="127.0.0.1",
    )


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
