"""How long `receiver backup` and `receiver restore` take on a database of `--messages`
SMS (four events each: 1M events for 250,000), its records built by `rebuild`.

The events are bench/projection.py's realistic ones, stored through the writer's
batch code and projected; then `receiver backup` and `receiver restore` (into an
empty database of the same server) run as the commands they are, timed from outside,
with the file's size and each table's rows compared after the restore.

    .venv/bin/python bench/backup.py [--messages 250000]
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
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.projection import realistic_events, store_and_analyze
from receiver.db.engine import create_pool
from receiver.replay import rebuild
from testkit.support import bench_server, scratch_database

_COUNTED = ("events", "deliveries", "messages", "transitions", "observations")


async def seed(url: str, messages: int) -> None:
    pool = await create_pool(url, size=4, command_timeout=3600)
    try:
        async with pool.acquire() as conn:
            await store_and_analyze(conn, realistic_events(messages, seed=3))
        await rebuild(pool, batch=4000)
    finally:
        await pool.close()


async def counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in _COUNTED}  # noqa: S608
    finally:
        await conn.close()


def timed(*args: str, url: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env={**os.environ, "RECEIVER_DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"receiver {' '.join(args)} failed: {done.stderr}")
    print(f"  {done.stdout.strip()}", flush=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=250_000)
    args = parser.parse_args()
    with (
        bench_server() as postgres,
        scratch_database(postgres) as source,
        scratch_database(postgres, migrated=False) as target,
        tempfile.TemporaryDirectory() as folder,
    ):
        started = time.perf_counter()
        asyncio.run(seed(postgres.url_for(source), args.messages))
        seeded = asyncio.run(counts(postgres.url_for(source)))
        print(f"seeded {seeded} in {time.perf_counter() - started:.0f} s", flush=True)
        path = Path(folder) / "receiver.dump"
        backup = timed("backup", str(path), url=postgres.url_for(source))
        size = path.stat().st_size
        restore = timed("restore", str(path), url=postgres.url_for(target))
        restored = asyncio.run(counts(postgres.url_for(target)))
        assert restored == seeded, (restored, seeded)
        print(
            f"{seeded['events']:,} events, {seeded['messages']:,} messages:"
            f" backup {backup:.1f} s ({size / 1e6:.0f} MB), restore {restore:.1f} s"
            " (the commands' whole runs, migrate included); every table's rows equal",
            flush=True,
        )


if __name__ == "__main__":
    main()
