"""How long a backlog takes to drain: `--events` stored and pending, then `receiver worker`s.

The events are the deliveries of a `receiver simulate` plan (the benchmark's mix),
stored as the answer path stores them (`store_batch`, each new event of a handled
type left pending in its partition) but without HTTP, as fast as the database takes
them, once. Then, for each count of `--workers` (1, 2 and 4 by default), a copy of
that database is drained by that many `receiver worker` processes with their
projectors alone (as separate workers would after an outage, or `serve` after a
burst), and the time from their start until nothing is pending is measured, with
the CPU they and PostgreSQL used. Nothing is extrapolated: the backlog is as large
as asked, and every count drains the same one.

    .venv/bin/python bench/drain.py [--events 1000000] [--batch-max 2000] [--workers 1,2,4]
    RECEIVER_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres ...
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.callr.envelope import parse_envelope
from receiver.db.engine import create_pool
from receiver.projection.store import Incoming, store_batch
from receiver.simulate import Mix, Plan
from testkit.support import bench_server, pending, scratch_database

_STORE_BATCH = 2000


async def fill(url: str, events: int) -> int:
    """Store the first `events` deliveries of a plan large enough; how many are pending."""
    plan = Plan(events // 3 + 1, Mix(odd=0), seed=31)
    pool = await create_pool(url, size=2, command_timeout=600)
    try:
        chunk: list[Incoming] = []
        for stored, delivery in enumerate(plan.deliveries(), start=1):
            body = orjson.dumps(delivery.document)
            chunk.append(
                Incoming(
                    parsed=parse_envelope(body),
                    body=body,
                    received_at=datetime.now(UTC),
                    headers={},
                    remote_addr=None,
                )
            )
            if len(chunk) == _STORE_BATCH or stored == events:
                async with pool.acquire() as conn:
                    await store_batch(conn, chunk)
                chunk = []
            if stored == events:
                break
        async with pool.acquire() as conn:
            # Only the tables the fill wrote: the ones the projector writes are empty
            # now, and statistics saying so would mislead the planner for good where
            # autovacuum is off (as on the development machine's server).
            await conn.execute("VACUUM ANALYZE events, deliveries, projection_pending")
            return int(await conn.fetchval("SELECT count(*) FROM projection_pending"))
    finally:
        await pool.close()


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(cpu_by_pid(processes).values())


def cpu_by_pid(processes: list[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def postgres_processes() -> list[psutil.Process]:
    named = psutil.process_iter(["name"])
    return [p for p in named if (p.info["name"] or "").startswith("postgres")]


def postgres_cpu_since(before: dict[int, float]) -> float:
    """PostgreSQL's CPU since `before`, its backends started meanwhile included."""
    now = cpu_by_pid(postgres_processes())
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in now.items())


def drain(url: str, batch_max: int, log: Path, *, workers: int) -> dict[str, float]:
    env = {
        **os.environ,
        "RECEIVER_DATABASE_URL": url,
        "RECEIVER_DISPATCHER": "false",
        "RECEIVER_PROJECTOR_BATCH_MAX": str(batch_max),
        "RECEIVER_LOG_FORMAT": "json",
    }
    postgres_before = cpu_by_pid(postgres_processes())
    started = time.perf_counter()
    with log.open("wb") as sink:
        running = [
            subprocess.Popen(
                [sys.executable, "-m", "receiver", "worker"], env=env, stdout=sink, stderr=sink
            )
            for _ in range(workers)
        ]
    watched = [psutil.Process(worker.pid) for worker in running]
    peak = 0
    last = time.perf_counter()
    try:
        while left := asyncio.run(pending(url)):
            peak = max(peak, *(process.memory_info().rss for process in watched))
            if time.perf_counter() - last >= 10:
                last = time.perf_counter()
                print(f"  {last - started:5.0f} s: {left:,} pending", flush=True)
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        worker_cpu = cpu_seconds(watched)
        postgres_cpu = postgres_cpu_since(postgres_before)
    finally:
        for worker in running:
            worker.terminate()
            worker.wait(timeout=30)
    return {
        "seconds": elapsed,
        "worker_cpu": worker_cpu,
        "postgres_cpu": postgres_cpu,
        "peak_rss_mb": peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-max", type=int, default=2000, help="the projector's batch")
    parser.add_argument(
        "--workers", default="1,2,4", help="counts of `receiver worker` processes, in turn"
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    with bench_server() as postgres, scratch_database(postgres) as template:
        url = postgres.url_for(template)
        autovacuum = asyncio.run(setting(url, "autovacuum"))
        started = time.perf_counter()
        backlog = asyncio.run(fill(url, args.events))
        filled = time.perf_counter() - started
        print(
            f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores: {args.events:,} deliveries"
            f" stored in {filled:.0f} s, {backlog:,} events pending; batches of"
            f" {args.batch_max}; autovacuum {autovacuum}",
            flush=True,
        )
        rates: dict[int, float] = {}
        for workers in counts:
            with scratch_database(postgres, template=template) as name:
                log = Path(tempfile.mkdtemp(prefix="receiver-drain-")) / "worker.log"
                result = drain(postgres.url_for(name), args.batch_max, log, workers=workers)
            seconds = result["seconds"]
            rates[workers] = backlog / seconds
            print(
                f"| {workers} `receiver worker` | {seconds:.1f} s | {rates[workers]:,.0f} events/s"
                f" | {rates[workers] / rates[counts[0]]:.2f} | workers"
                f" {result['worker_cpu'] / seconds:.2f}, PostgreSQL"
                f" {result['postgres_cpu'] / seconds:.2f} CPU | {result['peak_rss_mb']:.0f} MB |",
                flush=True,
            )


async def setting(url: str, name: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT current_setting($1)", name))
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
