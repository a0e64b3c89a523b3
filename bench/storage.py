"""What the receiver keeps on disk for each event it answers: bytes a stored event takes
with its indexes, and the rest (message records, history) per message.

`receiver serve` (1 worker) on a fresh database takes `--messages` SMS of the
simulator's traffic (`receiver simulate`, its default mix: v1 and v2, histories,
repeats, retries, replies); once the projector has caught up, VACUUM ANALYZE, then
each table's size with its indexes and TOAST (pg_total_relation_size), divided by
what it holds.

    .venv/bin/python bench/storage.py [--messages 20000]
    RECEIVER_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres ...
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throughput import SECRET, catch_up, free_port, serve_receiver, stop, wait_ready
from receiver.simulate import Mix, Plan, Signer, simulate
from testkit.support import bench_server, scratch_database

# The tables that grow with traffic: the events and what is made of them.
EVENT_TABLES = ("events", "deliveries")
MESSAGE_TABLES = ("messages", "transitions", "forwards")


async def sizes(url: str) -> dict[str, tuple[int, int]]:
    """Each table's rows and bytes (with its indexes and TOAST)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
        found = {}
        for table in (*EVENT_TABLES, *MESSAGE_TABLES):
            rows = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - constant
            size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            found[table] = (int(rows), int(size))
        return found
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="receiver-storage-"))
    with bench_server() as postgres, scratch_database(postgres) as name:
        url = postgres.url_for(name)
        port = free_port()
        server = serve_receiver(url, port, 1, folder / "receiver.log")
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", server)
            report = asyncio.run(
                simulate(
                    f"http://127.0.0.1:{port}/webhooks/callr",
                    Plan(args.messages, Mix(odd=0), seed=17),
                    signer=Signer(SECRET),
                    concurrency=32,
                    duration=3600,
                )
            )
            asyncio.run(catch_up(url))
        finally:
            stop(server)
        found = asyncio.run(sizes(url))
    events = found["events"][0]
    messages = found["messages"][0]
    print(f"{report.requests:,} requests, {events:,} events, {messages:,} messages")
    for table, (rows, size) in found.items():
        print(f"  {table:<12} {rows:>10,} rows {size / 2**20:>9.1f} MiB")
    per_event = sum(found[t][1] for t in EVENT_TABLES) / events
    per_message = sum(found[t][1] for t in MESSAGE_TABLES) / messages
    print(
        f"stored events with their deliveries and indexes: {per_event:,.0f} bytes an event;"
        f" message records, history and forwards: {per_message:,.0f} bytes a message;"
        f" at 1M events a day, {per_event * 1e6 * 30 / 2**30:.1f} GiB of events a month"
    )


if __name__ == "__main__":
    main()
