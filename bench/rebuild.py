"""How fast `receiver rebuild` re-projects stored events (target: 20,000 events/s).

Seeds realistic events (bench/projection.py's: each SMS reported at four steps by
v1 or v2 events, half with history) through the writer's batch code, then times
the rebuild over all of them, fsync on.

    .venv/bin/python bench/rebuild.py [--messages 25000] [--batch 2000]
    RECEIVER_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres ...
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from projection import realistic_events
from scratch import bench_server, scratch_database

from receiver.db.engine import create_pool
from receiver.ingest.store import store_batch, stored_reports
from receiver.projection import project
from receiver.replay import rebuild


async def measure(url: str, messages: int, batch: int) -> tuple[int, float]:
    pool = await create_pool(url, size=4, command_timeout=600)
    try:
        items = realistic_events(messages, seed=2)
        async with pool.acquire() as conn:
            for offset in range(0, len(items), 1000):
                chunk = items[offset : offset + 1000]
                async with conn.transaction():
                    await project(conn, stored_reports(chunk, await store_batch(conn, chunk)))
            await conn.execute("VACUUM ANALYZE")
        started = time.perf_counter()
        summary = await rebuild(pool, batch=batch)
        elapsed = time.perf_counter() - started
        assert summary.replayed == len(items), summary.line()
        return len(items), elapsed
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=25_000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    with bench_server() as postgres, scratch_database(postgres) as name:
        events, elapsed = asyncio.run(measure(postgres.url_for(name), args.messages, args.batch))
    print(f"rebuilt {events} events ({args.messages} SMS) in {elapsed:.1f} s, batch {args.batch}")
    print(f"rate: {events / elapsed:,.0f} events/s (target 20,000)")


if __name__ == "__main__":
    main()
