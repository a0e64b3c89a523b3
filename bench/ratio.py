"""The receiver's answer rate against the minimal durable receiver's, measured at once.

`bench/throughput.py` runs each server for a whole stretch, one after the other; on a
shared machine whose speed moves from minute to minute, a round's ratio then says
as much about the machine as about the code. Here both servers run side by side,
each on its own fresh database, and wrk (64 connections) alternates between them in
short slices, `--slices` each, the receiver first in odd pairs and second in even
ones. Each server's rate is its requests over its own seconds of load, so a change
in the machine's speed falls on both alike.

    .venv/bin/python bench/ratio.py [--slice 3] [--slices 10] [--projector]
    RECEIVER_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres ...

The receiver is `receiver serve`, 1 worker, HMAC checked, JSON logs, with its
projector off (the answer path alone) unless `--projector`. With it, each receiver
slice ends once its projector has caught up: the seconds (and CPU) it takes after
the load are the receiver's, so that a projector falling behind does not pass its
work on to the minimal's slice. Each slice sends the
next part of the `receiver simulate` plan, so that the receiver's traffic goes on
(new events, their updates and replies) rather than repeating the first lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throughput import (
    CpuWatch,
    backlog_now,
    catch_up,
    free_port,
    run_wrk,
    serve_minimal,
    serve_receiver,
    stop,
    wait_ready,
    write_requests,
)
from receiver.simulate import Mix, Plan
from testkit.support import bench_server, scratch_database


def slice_files(folder: Path, slices: int) -> list[Path]:
    """wrk's request files of `slices` slices of the simulator's plan, each starting
    further into it (the receiver's answers to a slice's first lines must be new events,
    not repeats of the last slice's)."""
    deliveries = list(Plan(60_000, Mix(odd=0), seed=13).deliveries())
    step = len(deliveries) // slices
    files = []
    for n in range(slices):
        path = folder / f"slice-{n}.tsv"
        write_requests(deliveries[n * step :] + deliveries[: n * step], path)
        files.append(path)
    return files


def serve_worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    """`receiver worker` on the receiver's database: its projector, dispatcher and sender."""
    env = {**os.environ, "RECEIVER_DATABASE_URL": database_url, "RECEIVER_LOG_FORMAT": "json"}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "receiver", "worker"], stderr=out, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slice", type=int, default=3, help="seconds of load a slice")
    parser.add_argument("--slices", type=int, default=10, help="slices for each server")
    parser.add_argument("--projector", action="store_true", help="the projector in the process")
    parser.add_argument(
        "--worker", action="store_true", help="the projector in a `receiver worker` beside it"
    )
    args = parser.parse_args()
    if args.projector and args.worker:
        parser.error("--projector and --worker are two ways to run the projector: choose one")
    projecting = args.projector or args.worker
    folder = Path(tempfile.mkdtemp(prefix="receiver-ratio-"))
    files = slice_files(folder, args.slices)
    env = {} if args.projector else {"RECEIVER_PROJECTOR": "false"}
    worker: subprocess.Popen[bytes] | None = None
    totals = {"receiver": [0.0, 0.0], "minimal": [0.0, 0.0]}
    pairs = []
    with (
        bench_server() as postgres,
        scratch_database(postgres) as receiver_db,
        scratch_database(postgres, migrated=False) as minimal_db,
    ):
        receiver_port, minimal_port = free_port(), free_port()
        receiver_url = postgres.url_for(receiver_db)
        receiver = serve_receiver(receiver_url, receiver_port, 1, folder / "receiver.log", env=env)
        minimal = serve_minimal(postgres.url_for(minimal_db), minimal_port, 1)
        if args.worker:
            worker = serve_worker(receiver_url, folder / "worker.log")
        try:
            wait_ready(f"http://127.0.0.1:{receiver_port}/readyz", receiver)
            wait_ready(f"http://127.0.0.1:{minimal_port}/", minimal)
            pids = {"receiver": receiver.pid, "minimal": minimal.pid}
            spent = {"receiver": 0.0, "minimal": 0.0}
            # Events waiting for the projector when a receiver slice's load ended.
            backlogs: list[int] = []
            for n, requests in enumerate(files):
                order = ["receiver", "minimal"] if n % 2 == 0 else ["minimal", "receiver"]
                rates = {}
                for name in order:
                    port = receiver_port if name == "receiver" else minimal_port
                    watches = [CpuWatch(pids[name])]
                    if name == "receiver" and worker is not None:
                        watches.append(CpuWatch(worker.pid))
                    result = run_wrk(f"http://127.0.0.1:{port}", requests, args.slice, None)
                    done = result["rate"] * args.slice
                    seconds = float(args.slice)
                    if name == "receiver" and projecting:
                        backlog = asyncio.run(backlog_now(receiver_url))
                        seconds += asyncio.run(catch_up(receiver_url))
                        backlogs.append(backlog)
                    # Microseconds a request of the server's own processes, back to seconds.
                    spent[name] += sum(
                        watch.per_request(done, seconds)["receiver_us"] * done for watch in watches
                    )
                    rates[name] = done / seconds
                    totals[name][0] += done
                    totals[name][1] += seconds
                pairs.append(rates["receiver"] / rates["minimal"])
                waiting = f" (backlog at the end of the load {backlogs[-1]:,})" if backlogs else ""
                print(
                    f"slice {n}: receiver {rates['receiver']:,.0f}/s{waiting}, minimal"
                    f" {rates['minimal']:,.0f}/s, ratio {pairs[-1]:.2f}",
                    flush=True,
                )
        finally:
            stop(receiver)
            stop(minimal)
            if worker is not None:
                stop(worker)
    rate = {name: done / seconds for name, (done, seconds) in totals.items()}
    where = (
        "with the projector in the process"
        if args.projector
        else "with the projector in a worker beside it"
        if args.worker
        else "without the projector in the process"
    )
    print(
        f"{where},"
        f" {args.slices} slices of {args.slice} s each: receiver {rate['receiver']:,.0f}/s,"
        f" minimal durable {rate['minimal']:,.0f}/s: ratio"
        f" {rate['receiver'] / rate['minimal']:.2f} (slices: median"
        f" {statistics.median(pairs):.2f}, {min(pairs):.2f}-{max(pairs):.2f}); CPU a request:"
        f" receiver {spent['receiver'] / totals['receiver'][0]:.0f} µs, minimal"
        f" {spent['minimal'] / totals['minimal'][0]:.0f} µs",
        flush=True,
    )


if __name__ == "__main__":
    main()
