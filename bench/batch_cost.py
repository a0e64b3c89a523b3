"""What each statement of a live batch costs PostgreSQL: planning and execution, by batch size.

Stores `--stored` realistic events first (bench/projection.py's), then runs the
answer path's statement (`store_batch`) and the projector's (`project`, `route`)
over live-sized batches, one transaction each (live, they are two: the
projector's batches are larger). Every statement it sends is run once under
EXPLAIN (ANALYZE, SUMMARY), in a savepoint rolled back, then for real: the
planning and execution times are PostgreSQL's own. Comparing batch sizes splits
each statement's cost into a fixed part and a part per event. EXPLAIN plans its
statement each time; the writer keeps one plan per statement and connection, and
no longer spends the planning column on each batch.

    .venv/bin/python bench/batch_cost.py [--sizes 15,60,200] [--batches 20] [--stored 40000]
    RECEIVER_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.projection import realistic_events, store_and_analyze
from receiver.db.engine import Connection, create_pool
from receiver.forwarding.routing import route
from receiver.projection.records import project
from receiver.projection.store import store_batch, stored_reports
from receiver.reports import records
from testkit.support import bench_server, scratch_database


class Explained:
    """A connection whose statements are each explained (and rolled back) before they run."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        # statement (its first words) -> [count, planning ms, execution ms]
        self.costs: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])

    async def _explain(self, sql: str, args: tuple[Any, ...]) -> None:
        async with self.conn.transaction():  # a savepoint in the batch's transaction
            document = await self.conn.fetchval(
                "EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) " + sql, *args
            )
            raise _Undo(document)

    async def explain(self, sql: str, args: tuple[Any, ...]) -> None:
        try:
            await self._explain(sql, args)
        except _Undo as undo:
            (plan,) = json.loads(undo.document)
            cost = self.costs[" ".join(sql.split())[:50]]
            cost[0] += 1
            cost[1] += plan["Planning Time"]
            cost[2] += plan["Execution Time"]

    async def fetch(self, sql: str, *args: Any) -> Any:
        await self.explain(sql, args)
        return await self.conn.fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> Any:
        await self.explain(sql, args)
        return await self.conn.execute(sql, *args)

    async def executemany(self, sql: str, args: Any) -> Any:
        return await self.conn.executemany(sql, args)


class _Undo(Exception):
    def __init__(self, document: str) -> None:
        self.document = document


async def measure(url: str, stored: int, size: int, batches: int) -> dict[str, list[float]]:
    pool = await create_pool(url, size=2, command_timeout=600)
    try:
        items = realistic_events((stored + size * batches) // 4 + 1, seed=3)
        seed, live = items[:stored], items[stored : stored + size * batches]
        async with pool.acquire() as conn:
            await store_and_analyze(conn, seed)
            explained = Explained(conn)
            # Duck-typed: it has the methods the statements below call, each explained.
            stand_in = cast(Connection, explained)
            for offset in range(0, len(live), size):
                chunk = live[offset : offset + size]
                async with conn.transaction():
                    outcomes = await store_batch(stand_in, chunk)
                    reports = records(stored_reports(chunk, outcomes))
                    await project(stand_in, reports)
                    await route(stand_in, reports, window=timedelta(days=7))
        return explained.costs
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="15,60,200", help="events a batch, comma-separated")
    parser.add_argument("--batches", type=int, default=20, help="batches of each size")
    parser.add_argument("--stored", type=int, default=40_000, help="events stored beforehand")
    args = parser.parse_args()
    for size in (int(n) for n in args.sizes.split(",")):
        with bench_server() as postgres, scratch_database(postgres) as name:
            costs = asyncio.run(measure(postgres.url_for(name), args.stored, size, args.batches))
        print(f"batches of {size} events, {args.stored:,} stored (ms a batch):")
        for statement, (count, planning, execution) in costs.items():
            print(
                f"  planning {planning / count:6.3f}  execution {execution / count:7.3f}"
                f"  ({count:.0f} runs)  {statement}"
            )


if __name__ == "__main__":
    main()
