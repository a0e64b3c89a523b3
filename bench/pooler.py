"""The receiver behind PgBouncer (transaction mode) against the same receiver on the
server itself, measured at once: answers a second, and the server connections each
holds.

One PostgreSQL of the run's own (initdb, on a port of its own) with two databases,
PgBouncer in front of it (testkit/pooler.py, `--pool-size` server connections a
database), and two `receiver serve` processes side by side: one on the server, one
on the pooler with RECEIVER_DIRECT_DATABASE_URL. wrk (64 connections) alternates
between them in slices, as bench/ratio.py does; while each is under load, the server
connections of its database are counted every 0.2 s (pg_stat_activity), the most
kept.

    .venv/bin/python bench/pooler.py [--slice 3] [--slices 6] [--workers 1] [--pool-size 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ratio import slice_files
from bench.throughput import (
    catch_up,
    free_port,
    run_wrk,
    serve_receiver,
    stop,
    wait_ready,
)
from receiver.db import migrate
from testkit.cluster import Server, cluster_folder, execute
from testkit.pooler import PgBouncer


class Connections(threading.Thread):
    """The most server connections to `database` seen while it runs."""

    def __init__(self, admin: str, database: str) -> None:
        super().__init__(daemon=True)
        self.admin, self.database = admin, database
        self.most = 0
        self.done = threading.Event()

    def run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        conn = await asyncpg.connect(self.admin)
        try:
            while not self.done.is_set():
                n = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", self.database
                )
                self.most = max(self.most, int(n))
                await asyncio.sleep(0.2)
        finally:
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slice", type=int, default=3, help="seconds of load a slice")
    parser.add_argument("--slices", type=int, default=6, help="slices for each receiver")
    parser.add_argument("--workers", type=int, default=1, help="serve workers of each")
    parser.add_argument("--pool-size", type=int, default=10, help="PgBouncer's default_pool_size")
    parser.add_argument(
        "--pooled-settings-direct",
        action="store_true",
        help="the receiver on the server with the pooler's connection settings (no statement"
        " kept prepared): what the settings cost, without the pooler",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="receiver-pooler-"))
    files = slice_files(folder, args.slices)
    with cluster_folder() as root:
        server = Server(root, "server")
        server.init()
        server.configure(max_connections="200")
        server.start()
        bouncer = PgBouncer(root, server.port, pool_size=args.pool_size)
        processes = []
        try:
            for name in ("direct", "pooled"):
                asyncio.run(execute(server.url(), f"CREATE DATABASE {name}"))
                migrate.upgrade(server.url(name))
            bouncer.start()
            ports = {"direct": free_port(), "pooled": free_port()}
            urls = {"direct": server.url("direct"), "pooled": bouncer.url("pooled")}
            for name in ("direct", "pooled"):
                pooled_settings = name == "pooled" or args.pooled_settings_direct
                env = {"RECEIVER_DIRECT_DATABASE_URL": server.url(name)} if pooled_settings else {}
                processes.append(
                    serve_receiver(
                        urls[name], ports[name], args.workers, folder / f"{name}.log", env=env
                    )
                )
            for name, process in zip(("direct", "pooled"), processes, strict=True):
                wait_ready(f"http://127.0.0.1:{ports[name]}/readyz", process)
            totals = {"direct": [0.0, 0.0], "pooled": [0.0, 0.0]}
            most = {"direct": 0, "pooled": 0}
            p99: dict[str, list[float]] = {"direct": [], "pooled": []}
            pairs = []
            for n, requests in enumerate(files):
                order = ["direct", "pooled"] if n % 2 == 0 else ["pooled", "direct"]
                rates = {}
                for name in order:
                    watch = Connections(server.url(), name)
                    watch.start()
                    result = run_wrk(f"http://127.0.0.1:{ports[name]}", requests, args.slice, None)
                    seconds = args.slice + asyncio.run(catch_up(server.url(name)))
                    watch.done.set()
                    watch.join()
                    done = result["rate"] * args.slice
                    rates[name] = done / seconds
                    totals[name][0] += done
                    totals[name][1] += seconds
                    most[name] = max(most[name], watch.most)
                    p99[name].append(result["p99"])
                pairs.append(rates["pooled"] / rates["direct"])
                print(
                    f"slice {n}: direct {rates['direct']:,.0f}/s, pooled {rates['pooled']:,.0f}/s,"
                    f" ratio {pairs[-1]:.2f}",
                    flush=True,
                )
                time.sleep(0.5)
        finally:
            for process in processes:
                stop(process)
            bouncer.stop()
            server.stop("immediate")
    rate = {name: done / seconds for name, (done, seconds) in totals.items()}
    control = ", direct with the settings of the pooled" if args.pooled_settings_direct else ""
    print(
        f"{args.workers} worker(s), projector in the process, {args.slices} slices of"
        f" {args.slice} s each{control}:"
        f" direct {rate['direct']:,.0f}/s (p99 median"
        f" {statistics.median(p99['direct']):.1f} ms, at most {most['direct']} server"
        f" connections), behind PgBouncer {rate['pooled']:,.0f}/s (p99 median"
        f" {statistics.median(p99['pooled']):.1f} ms, at most {most['pooled']} server"
        f" connections, pool size {args.pool_size}): ratio"
        f" {rate['pooled'] / rate['direct']:.2f} (slices: median {statistics.median(pairs):.2f},"
        f" {min(pairs):.2f}-{max(pairs):.2f})",
        flush=True,
    )


if __name__ == "__main__":
    main()
