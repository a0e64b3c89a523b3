"""What the projection costs on top of storing the events alone, measured in one run.

Runs the writer's real batch code (`store_batch`, then `project`) over the same
realistic events, in batches, one transaction per batch with fsync on, into fresh
databases: once storing only, once storing and projecting. Alternates the two
modes for several rounds and reports the best rate of each and their ratio.

    .venv/bin/python bench/projection.py [--messages 5000] [--batch 200] [--rounds 3]
    RECEIVER_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres ...  (a server)

Without RECEIVER_BENCH_DATABASE_URL it starts an embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.callr.envelope import parse_envelope
from receiver.projection.records import project
from receiver.projection.store import Incoming, store_batch, stored_reports
from receiver.reports import records
from receiver.status import Status
from testkit.callr_events import Step, v1_event, v2_event
from testkit.support import bench_server, scratch_database

LIFECYCLE = (Status.CREATED, Status.PENDING, Status.SENT, Status.DELIVERED)


def realistic_events(messages: int, seed: int) -> list[Incoming]:
    """Each SMS reported at each step by a v1 or v2 event, half with history; shuffled a little."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 2, tzinfo=UTC)
    items = []
    for n in range(messages):
        sms_id = f"b{n:07d}"
        base = start + timedelta(seconds=rng.randrange(90 * 86400))
        steps = [Step(s, base + timedelta(seconds=3 * k)) for k, s in enumerate(LIFECYCLE)]
        for k in range(1, len(steps) + 1):
            build = v1_event if rng.random() < 0.5 else v2_event
            body = build(f"{sms_id}-{k}", sms_id, steps[:k], with_history=rng.random() < 0.5)
            items.append(
                Incoming(
                    parsed=parse_envelope(body),
                    body=body,
                    received_at=datetime.now(UTC),
                    headers={"user-agent": "CALLR/API 0.9942"},
                    remote_addr="127.0.0.1",
                )
            )
    # Deliveries of neighbouring messages interleave, as they do on the wire.
    for i in range(len(items) - 1):
        if rng.random() < 0.3:
            items[i], items[i + 1] = items[i + 1], items[i]
    return items


async def store_and_analyze(conn: Any, items: Sequence[Incoming]) -> None:
    """Store and project `items` in transactions of 1,000, then analyze: a database in use."""
    for offset in range(0, len(items), 1000):
        chunk = items[offset : offset + 1000]
        async with conn.transaction():
            await project(conn, records(stored_reports(chunk, await store_batch(conn, chunk))))
    await conn.execute("VACUUM ANALYZE")


async def run(url: str, items: Sequence[Incoming], batch: int, *, projecting: bool) -> float:
    # Every statement planned with current statistics, as replay's pool does (the live
    # writer keeps its plans instead; bench/throughput.py measures that).
    conn = await asyncpg.connect(url, server_settings={"plan_cache_mode": "force_custom_plan"})
    try:
        started = time.perf_counter()
        for offset in range(0, len(items), batch):
            chunk = items[offset : offset + batch]
            async with conn.transaction():
                outcomes = await store_batch(conn, chunk)
                if projecting:
                    await project(conn, records(stored_reports(chunk, outcomes)))
        return len(items) / (time.perf_counter() - started)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    items = realistic_events(args.messages, seed=1)
    best = {False: 0.0, True: 0.0}
    with bench_server() as postgres, scratch_database(postgres) as template:
        for _ in range(args.rounds):
            for projecting in (False, True):
                with scratch_database(postgres, template=template) as name:
                    rate = asyncio.run(
                        run(postgres.url_for(name), items, args.batch, projecting=projecting)
                    )
                best[projecting] = max(best[projecting], rate)
    print(
        f"events: {len(items)} ({args.messages} SMS x 4 reports), batch {args.batch}, "
        f"best of {args.rounds} rounds, fsync on"
    )
    print(f"store only          {best[False]:10,.0f} events/s")
    print(f"store + projection  {best[True]:10,.0f} events/s")
    print(f"ratio               {best[True] / best[False]:10.2f}")


if __name__ == "__main__":
    main()
