"""How a reply's routing reads the message table: one range of one index, whatever its size."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import asyncpg

from receiver.forwarding import routing
from testkit.callr_events import BASE_TIME

SENDER = "ACME"
MTS = 3000


def index_conditions(plan: Any) -> list[tuple[str, str]]:
    """(index, condition) of every index scan in an EXPLAIN (FORMAT JSON) plan."""
    found = []
    if isinstance(plan, dict):
        if "Index Name" in plan:
            found.append((plan["Index Name"], plan.get("Index Cond", "")))
        for value in plan.values():
            found += index_conditions(value)
    elif isinstance(plan, list):
        for value in plan:
            found += index_conditions(value)
    return found


async def test_the_recent_mt_of_a_reply_is_looked_up_by_number_not_by_sender(
    database_url: str,
) -> None:
    """Every MT goes out from a handful of sender ids: a lookup that starts from the
    sender (the from_number index of the console's searches) reads every message sent
    from it, for each reply. It was chosen after the table was analyzed while small,
    and cost a millisecond a reply at 8,500 messages (the projection's heaviest
    statement); the lookup must read the one range of (to_number, created_at)."""
    conn = await asyncpg.connect(database_url)
    try:
        # Statistics of an empty table, as on a new deployment before autovacuum's
        # first analyze: then the messages.
        await conn.execute("ANALYZE messages")
        await conn.execute(
            """
            INSERT INTO messages (sms_id, direction, from_number, to_number, user_data,
                created_at, status, provider_status, status_at, status_rank, status_terminal,
                first_seen_at, last_seen_at)
            SELECT 'mt' || n, 'outbound', $1, '+3360000' || n, 'campaign', $2, 'sent', 'SENT',
                $2, 3, false, $2, $2
            FROM generate_series(1, $3) AS n
            """,
            SENDER,
            BASE_TIME,
            MTS,
        )
        args = [
            ["mo-1"],
            ["mo000001"],
            ["+33600001"],
            [SENDER],
            [None],
            [BASE_TIME + timedelta(minutes=5)],
            [0],
            timedelta(days=7),
            routing.NOTIFY_CHANNEL,
        ]
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off")
            (row,) = await conn.fetch("EXPLAIN (FORMAT JSON) " + routing._ROUTE, *args)
    finally:
        await conn.close()
    scans = index_conditions(json.loads(row[0]))
    on_messages = [(name, cond) for name, cond in scans if name.startswith("ix_messages")]
    assert on_messages, scans
    assert all(name == "ix_messages_to_number_created_at" for name, _ in on_messages), scans
    assert not any("from_number" in cond for _, cond in on_messages), scans
