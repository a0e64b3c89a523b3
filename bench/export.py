"""`GET /api/v1/messages/export` on a large table: its rate, and the serve process's
memory while it streams, against PostgreSQL's own COPY of the same rows in the same run.

Seeds `--messages` message records (bench/seed.py, 90 days of them), starts `receiver
serve` (1 worker) on them, and downloads the whole export as CSV and as NDJSON,
reading it as it comes; the process's resident memory is sampled every 0.1 s, the
peak kept. The baseline: `COPY (the export's own statement) TO STDOUT WITH CSV` read
by a client on the same machine, the least a server can do to hand the rows out.

    .venv/bin/python bench/export.py [--messages 1000000]
    RECEIVER_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres ...
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.datastructures import QueryParams

from bench.seed import seed
from bench.throughput import MemoryWatch, free_port, serve_receiver, stop, wait_ready
from receiver.api.export import Selection
from receiver.api.params import Cursors
from receiver.api.queries import Queries
from testkit.support import bench_server, scratch_database

TOKEN = "export-bench-token-0123456789"


def download(port: int, form: str, watch: MemoryWatch) -> tuple[int, int, float]:
    """Rows and bytes of the whole export, and its seconds, memory sampled meanwhile."""
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            watch.sample()
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    lines = size = 0
    with httpx.stream(
        "GET",
        f"http://127.0.0.1:{port}/api/v1/messages/export?format={form}",
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=600,
    ) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    # A CSV's header is a line; a text with a line end in it is more than one.
    return lines, size, seconds


async def copy_baseline(url: str, selection: Selection) -> tuple[int, float]:
    """Bytes and seconds of COPY (the export's statement, its arguments inlined) TO STDOUT."""
    conn = await asyncpg.connect(url)
    size = 0

    async def sink(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)

    try:
        # The statement's arguments are all NULL or empty but the statuses: no filter.
        sql = selection.sql
        for n, value in reversed(list(enumerate(selection.args, start=1))):
            literal = "ARRAY[]::text[]" if value == [] else "NULL"
            assert value in (None, []), value
            sql = sql.replace(f"${n}", literal)
        started = time.perf_counter()
        await conn.copy_from_query(sql, output=sink, format="csv")
        return size, time.perf_counter() - started
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="receiver-export-"))
    with bench_server() as postgres, scratch_database(postgres) as name:
        url = postgres.url_for(name)
        seconds = asyncio.run(seed(url, args.messages, batch=2000, seed_value=1, offset=0))
        print(f"seeded {args.messages:,} messages in {seconds:.0f} s", flush=True)
        asyncio.run(_analyze(url))
        _, selection = Queries(Cursors(lambda: b"unused")).messages_export(QueryParams())
        size, copy_seconds = asyncio.run(copy_baseline(url, selection))
        print(
            f"COPY ... TO STDOUT (csv): {args.messages / copy_seconds:,.0f} rows/s,"
            f" {size / copy_seconds / 1e6:.1f} MB/s, {copy_seconds:.1f} s",
            flush=True,
        )
        port = free_port()
        env = {"RECEIVER_API_TOKENS": TOKEN, "RECEIVER_PROJECTOR": "false"}
        server = serve_receiver(url, port, 1, folder / "receiver.log", env=env)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", server)
            for form in ("csv", "ndjson"):
                watch = MemoryWatch(server.pid)
                watch.sample()
                before = watch.peak_per_process
                lines, size, took = download(port, form, watch)
                ratio = copy_seconds / took
                print(
                    f"export {form}: {lines:,} lines, {size / 1e6:,.0f} MB in {took:.1f} s:"
                    f" {args.messages / took:,.0f} rows/s ({ratio:.2f} of COPY's rate),"
                    f" serve process {before / 2**20:.0f} MB before, peak"
                    f" {watch.peak_per_process / 2**20:.0f} MB",
                    flush=True,
                )
        finally:
            stop(server)


async def _analyze(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE messages")
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
