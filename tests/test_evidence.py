"""The evidence order, written once for Python and once for SQL: both order every pair alike.

The records' upsert, the batch's merge, the status changes and the status callbacks
all choose by it; a difference between the two would make the record and the
callback disagree on which report won. Real PostgreSQL decides the SQL side.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import asyncpg

from receiver.status import Status, evidence_key, evidence_row

_AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
# Same second and a second apart; provider words that differ by case and accent, where
# the database's default collation and byte order disagree.
_TIMES = (_AT, _AT + timedelta(seconds=1))
_WORDS = ("DELIVERED", "delivered", "Échec", "echec")


async def test_sql_and_python_order_every_pair_of_reports_alike(database_url: str) -> None:
    reports = [(status, at, word) for status in Status for at in _TIMES for word in _WORDS[:2]] + [
        (Status.FAILED, _AT, word) for word in _WORDS
    ]
    pairs = list(itertools.product(reports, repeat=2))
    left = evidence_row("$1::boolean", "$2::timestamptz", "$3::int", "$4::text", "$5::text")
    right = evidence_row("$6::boolean", "$7::timestamptz", "$8::int", "$9::text", "$10::text")
    conn = await asyncpg.connect(database_url)
    try:
        by_sql = [
            await conn.fetchval(f"SELECT {left} > {right}", *evidence_key(*a), *evidence_key(*b))
            for a, b in pairs
        ]
    finally:
        await conn.close()
    by_python = [evidence_key(*a) > evidence_key(*b) for a, b in pairs]
    assert by_sql == by_python
    assert sum(by_python) > len(pairs) // 3  # the pairs do disagree among themselves
