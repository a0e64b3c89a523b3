"""How fast `receiver rebuild` re-projects stored events (target: 20,000 events/s).

Seeds realistic events (bench/projection.py's: each SMS reported at four steps by
v1 or v2 events, half with history) through the writer's batch code, then times
the rebuild over all of them, fsync on, as `receiver rebuild` runs it: a child
process per range of SMS. `--in-process` replays the ranges in this process
instead, for comparison.

    .venv/bin/python bench/rebuild.py [--messages 25000] [--batch 4000] [--jobs 1,2] [--in-process]
    RECEIVER_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres ...
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.projection import realistic_events, store_and_analyze
from receiver import heap
from receiver.db.engine import create_pool
from receiver.replay import rebuild
from receiver.replay.workers import RangeWorkers
from testkit.support import bench_server, scratch_database


async def measure(
    url: str, messages: int, batch: int, jobs: int, workers: RangeWorkers | None
) -> tuple[int, float]:
    pool = await create_pool(url, size=4, command_timeout=600)
    try:
        # Received an hour before the rebuild, as a rebuild meets them in production: its
        # tail (the events from a minute before its start, TAIL_MARGIN) holds none.
        earlier = timedelta(hours=1)
        items = [
            replace(item, received_at=item.received_at - earlier)
            for item in realistic_events(messages, seed=2)
        ]
        async with pool.acquire() as conn:
            await store_and_analyze(conn, items)
        # The real command holds no list of a hundred thousand events: neither does
        # the timed part here, and the heap is settled as `receiver rebuild` does.
        seeded = len(items)
        del items
        heap.settle_after_startup()
        started = time.perf_counter()
        if workers is not None:
            workers.use(url, batch=batch, command_timeout=600)
        summary = await rebuild(pool, batch=batch, jobs=jobs, workers=workers)
        elapsed = time.perf_counter() - started
        assert summary.replayed == seeded, summary.line()
        print(
            f"  the swap (the tail of {summary.tail} events, the records copied in place):"
            f" {summary.swap_seconds:.1f} s of the {elapsed:.1f} s",
            flush=True,
        )
        return seeded, elapsed
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=25_000)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--jobs", default="2", help="comma-separated: each value is timed")
    parser.add_argument("--in-process", action="store_true", help="no child processes")
    args = parser.parse_args()
    how = "in one process" if args.in_process else "a process per range"
    for jobs in (int(n) for n in args.jobs.split(",")):
        with bench_server() as postgres, scratch_database(postgres) as name:
            url = postgres.url_for(name)
            # Forked before the event loop starts, as the command does.
            workers = None if args.in_process else RangeWorkers(jobs)
            try:
                events, elapsed = asyncio.run(
                    measure(url, args.messages, args.batch, jobs, workers)
                )
            finally:
                if workers is not None:
                    workers.close()
        print(
            f"jobs {jobs}, {how}: rebuilt {events} events ({args.messages} SMS) in {elapsed:.1f} s,"
            f" batch {args.batch}: {events / elapsed:,.0f} events/s (target 20,000)",
            flush=True,
        )


if __name__ == "__main__":
    main()
