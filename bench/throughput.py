"""Ingest throughput of `receiver serve` against a bare app and a minimal durable one, with wrk.

For each worker count asked for, under the same wrk load (64 connections for
`--duration` seconds, the signed deliveries of a `receiver simulate` plan: v1 and
v2, history, failures, MO replies, repeats, retries, second subscriptions,
out-of-order updates):
1. `receiver serve --workers N` on a fresh database (fsync and synchronous_commit
   checked on, as in production), production settings, HMAC signatures checked,
   its projector running in the same processes;
2. the catch-up: from the end of the load until nothing waits for the projector;
3. the check: the deliveries not stored (in flight when wrk stopped, or refused)
   are sent again as CALLR would; then every event sent is stored exactly once,
   every message has the final status the plan gives it, and every MO has one
   forward;
4. the minimal durable receiver (bench/minimal_durable.py): Starlette and asyncpg,
   one writer task group-committing (event id, raw body) into one table, each
   request answered after its commit. The floor any receiver that stores before
   it answers pays here;
5. a bare Starlette app that reads the body and answers 200: the HTTP ceiling.
Then: requests/s of each, the ratios, latency, the receiver's peak memory, the CPU
each request cost the receiver's processes and PostgreSQL's under load, the
catch-up and the end-to-end rate (requests / (load + catch-up)).

    .venv/bin/python bench/throughput.py [--workers 1,2,4] [--duration 20]
        [--baseline-rev REV] [--rounds N]

`--rounds N` runs each worker count N times and ends with the median of each ratio
to the minimal durable receiver: the machine's speed drifts between the runs of
one round, the median of several rounds much less.

`--baseline-rev` also runs the receiver of an earlier commit (checked out in a
temporary git worktree, run with this venv), on a database its own code migrates,
under the same load: a release measured against another in the same run.

wrk comes from the distribution's packages (scripts/system-packages installs it).
With --generators, it also measures how fast `receiver simulate` itself can drive
the bare app, to show which load generator can saturate the server. With
--without-writes, it also runs the receiver with its writer answering at once,
without the database (bench/no_writes.py), under the same load: how fast the
receiver's own code is, before storing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.simulate import Delivery, Mix, Plan, Signer, simulate
from testkit.support import bench_server, scratch_database

HERE = Path(__file__).resolve().parent
SECRET = "bench-subscription-secret"
CONNECTIONS = 64
BARE_APP = """
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def receive(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"result": "stored"})


app = Starlette(routes=[Route("/webhooks/callr", receive, methods=["POST"])])
"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in 60 s")


class MemoryWatch:
    """The peak resident memory of a process and its children, sampled."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak_per_process = 0
        self.peak_total = 0

    def sample(self) -> None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
            sizes = [p.memory_info().rss for p in processes]
        except psutil.Error:
            return
        # With workers, the parent only supervises: count the workers.
        workers = sizes[1:] or sizes
        self.peak_per_process = max(self.peak_per_process, *workers)
        self.peak_total = max(self.peak_total, sum(sizes))


class CpuWatch:
    """CPU seconds spent by the receiver's processes and by PostgreSQL's over a span.

    PostgreSQL's are all the processes named postgres on this machine: the bench
    expects nothing else to use the server meanwhile.
    """

    def __init__(self, pid: int) -> None:
        root = psutil.Process(pid)
        self.receiver = [root, *root.children(recursive=True)]
        self.start = self._read()

    def _read(self) -> tuple[float, float, float]:
        def seconds(processes: list[psutil.Process]) -> float:
            total = 0.0
            for process in processes:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                total += times.user + times.system
            return total

        postgres = [
            process
            for process in psutil.process_iter(["name"])
            if (process.info["name"] or "").startswith("postgres")
        ]
        return seconds(self.receiver), seconds(postgres), psutil.cpu_times().idle

    def per_request(self, requests: float, wall: float) -> dict[str, float]:
        """Microseconds of CPU a request, and the share of the machine left idle."""
        end = self._read()
        receiver, postgres, idle = (b - a for a, b in zip(self.start, end, strict=True))
        return {
            "receiver_us": receiver / requests * 1e6,
            "postgres_us": postgres / requests * 1e6,
            "idle": idle / (wall * (os.cpu_count() or 1)),
        }


def write_requests(deliveries: list[Delivery], path: Path) -> None:
    signer = Signer(SECRET)
    with path.open("wb") as out:
        for delivery in deliveries:
            body = orjson.dumps(delivery.document)
            signature = signer.headers(body)["X-CALLR-HmacSignature"]
            out.write(signature.encode() + b"\t" + body + b"\n")


def run_wrk(url: str, requests: Path, duration: int, watch: MemoryWatch | None) -> dict[str, Any]:
    threads = 2
    env = {**os.environ, "REQUESTS": str(requests), "THREADS": str(threads)}
    env["WEBHOOK_PATH"] = "/webhooks/callr"
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{CONNECTIONS}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "wrk_callr.lua"),
        url,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    while process.poll() is None:
        if watch is not None:
            watch.sample()
        time.sleep(0.2)
    output = process.stdout.read() if process.stdout else ""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        raise RuntimeError(f"wrk said:\n{output}")

    def latency(label: str) -> float:
        found = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if found is None:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found[2]]
        return float(found[1]) * scale

    maximum = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", output)
    threads_seen = [
        json.loads(line) for line in output.splitlines() if line.startswith('{"thread"')
    ]
    answers: Counter[str] = Counter()
    for thread in threads_seen:
        answers.update(thread["answers"])
    return {
        "rate": float(rate[1]),
        "p50": latency("50%"),
        "p99": latency("99%"),
        "max": float(maximum[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[maximum[2]]
        if maximum
        else float("nan"),
        "threads": threads_seen,
        "answers": dict(answers),
        "errors": re.findall(r"Socket errors:.*|Non-2xx.*", output),
    }


def sent_lines(threads: list[dict[str, Any]], total: int, nthreads: int) -> list[int]:
    """Indexes of the request lines wrk sent at least once."""
    sent: list[int] = []
    for thread in threads:
        mine = list(range(thread["thread"], total, nthreads))
        sent.extend(mine if thread["wraps"] else mine[: thread["position"]])
    return sorted(sent)


async def settle_and_check(
    database_url: str, url: str, deliveries: list[Delivery], sent: list[int]
) -> dict[str, Any]:
    """Send again what is not stored (as CALLR would), then compare with the plan."""
    wanted = {deliveries[i].event_id: deliveries[i] for i in sent}
    conn = await asyncpg.connect(database_url)
    try:
        stored = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM events")}
        missing = [d for event_id, d in wanted.items() if event_id not in stored]
        signer = Signer(SECRET)
        async with httpx.AsyncClient(timeout=30) as client:
            for delivery in missing:
                body = orjson.dumps(delivery.document)
                response = await client.post(url, content=body, headers=signer.headers(body))
                response.raise_for_status()
        await caught_up(conn)
        rows = await conn.fetch("SELECT event_id FROM events")
        events = [r["event_id"] for r in rows]
        forwards = await conn.fetchval("SELECT count(*) FROM forwards")
        statuses = {
            r["sms_id"]: r["status"]
            for r in await conn.fetch("SELECT sms_id, status::text FROM messages")
        }
    finally:
        await conn.close()
    expected: dict[str, tuple[int, str]] = {}
    for delivery in wanted.values():
        if delivery.sms_id is None:  # an invalid or unhandled event: no message
            continue
        best = expected.get(delivery.sms_id)
        if best is None or delivery.step > best[0]:
            expected[delivery.sms_id] = (delivery.step, delivery.status.value)
    wrong = [sms for sms, (_, status) in expected.items() if statuses.get(sms) != status]
    replies = sum(1 for d in wanted.values() if not d.outbound)
    ok = (
        len(events) == len(set(events)) == len(wanted)
        and set(events) == set(wanted)
        and set(statuses) == set(expected)
        and not wrong
        and forwards == replies
    )
    return {
        "ok": ok,
        "events_sent": len(wanted),
        "events_stored": len(events),
        "resent_after_run": len(missing),
        "messages": len(statuses),
        "wrong_status": len(wrong),
        "forwards": forwards,
        "replies": replies,
    }


async def caught_up(conn: Any) -> float:
    """Wait until nothing waits for the projector (a release without one: at once); seconds."""
    started = time.perf_counter()
    has_queue = await conn.fetchval("SELECT to_regclass('projection_pending') IS NOT NULL")
    while has_queue and await conn.fetchval(  # noqa: ASYNC110 (no event for it)
        "SELECT EXISTS (SELECT 1 FROM projection_pending)"
    ):
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


async def backlog_now(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('projection_pending') IS NOT NULL"):
            return 0
        return int(await conn.fetchval("SELECT count(*) FROM projection_pending"))
    finally:
        await conn.close()


async def catch_up(url: str) -> float:
    conn = await asyncpg.connect(url)
    try:
        return await caught_up(conn)
    finally:
        await conn.close()


def serve_receiver(
    database_url: str,
    port: int,
    workers: int,
    log: Path,
    *,
    writes: bool = True,
    source: Path | None = None,
    env: dict[str, str] | None = None,
    granian: bool = False,
) -> subprocess.Popen[bytes]:
    """`receiver serve`: this tree's, or (`source`) the one checked out there; or (`granian`)
    the same app factory under granian instead of uvicorn."""
    env = {
        **os.environ,
        "RECEIVER_DATABASE_URL": database_url,
        "RECEIVER_CALLR_HMAC_SECRETS": SECRET,
        "RECEIVER_LOG_FORMAT": "json",
        **(env or {}),
    }
    if source is not None:
        env["PYTHONPATH"] = str(source)
    entry = ["-m", "receiver"] if writes else [str(HERE / "no_writes.py")]
    command = [
        sys.executable,
        *entry,
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if granian:
        # The database migrated already; the factory reads the same settings.
        command = [
            str(Path(sys.executable).parent / "granian"),
            "--interface",
            "asgi",
            "--factory",
            "receiver.asgi:create_app_from_env",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-ws",
            "--loop",
            "uvloop",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    with log.open("wb") as sink:
        return subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)


def serve_bare(folder: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    (folder / "bare_app.py").write_text(BARE_APP)
    return serve_uvicorn("bare_app:app", folder, port, workers, {})


def serve_minimal(database_url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {"RECEIVER_DATABASE_URL": database_url}
    return serve_uvicorn("minimal_durable:app", HERE, port, workers, env)


def serve_uvicorn(
    app: str, folder: Path, port: int, workers: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(
        command, cwd=folder, stdout=subprocess.DEVNULL, env={**os.environ, **env}
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def one_run(
    postgres: Any,
    workers: int,
    duration: int,
    deliveries: list[Delivery],
    requests: Path,
    folder: Path,
    *,
    without_writes: bool,
    baseline: Path | None,
    deferred: bool,
    granian: bool = False,
) -> dict[str, Any]:
    ceiling = previous = None
    with scratch_database(postgres) as name:
        url = postgres.url_for(name)
        settings = asyncio.run(_durability(url))
        receiver, watch, check = run_receiver(url, workers, duration, deliveries, requests, folder)
        if without_writes:
            ceiling = run_without_writes(url, workers, requests, duration, folder)
    # The answer path alone: under uvicorn (`receiver serve`), then under granian.
    alone: dict[bool, dict[str, Any] | None] = {False: None, True: None}
    for under_granian in [False] * deferred + [True] * granian:
        with scratch_database(postgres) as name:
            run, _, run_check = run_receiver(
                postgres.url_for(name),
                workers,
                duration,
                deliveries,
                requests,
                folder,
                deferred=True,
                granian=under_granian,
            )
            run["check"] = run_check
            alone[under_granian] = run
    if baseline is not None:
        with scratch_database(postgres, migrated=False) as name:
            url = postgres.url_for(name)
            migrate_with(baseline, url)
            previous, _, previous_check = run_receiver(
                url, workers, duration, deliveries, requests, folder, source=baseline
            )
            previous["check"] = previous_check
    with scratch_database(postgres, migrated=False) as name:
        port = free_port()
        minimal_server = serve_minimal(postgres.url_for(name), port, workers)
        try:
            wait_ready(f"http://127.0.0.1:{port}/", minimal_server)
            minimal = run_wrk(f"http://127.0.0.1:{port}", requests, duration, None)
        finally:
            stop(minimal_server)
    port = free_port()
    bare_server = serve_bare(folder, port, workers)
    try:
        wait_ready(f"http://127.0.0.1:{port}/", bare_server)
        bare = run_wrk(f"http://127.0.0.1:{port}", requests, duration, None)
    finally:
        stop(bare_server)
    return {
        "workers": workers,
        "database": settings,
        "receiver": receiver,
        "minimal": minimal,
        "bare": bare,
        "baseline": previous,
        "deferred": alone[False],
        "granian": alone[True],
        "ratio": receiver["rate"] / bare["rate"],
        "ratio_to_minimal": receiver["rate"] / minimal["rate"],
        "without_writes": ceiling,
        "peak_rss_mb_per_process": watch.peak_per_process / 2**20,
        "peak_rss_mb_total": watch.peak_total / 2**20,
        "check": check,
    }


def run_receiver(
    url: str,
    workers: int,
    duration: int,
    deliveries: list[Delivery],
    requests: Path,
    folder: Path,
    *,
    source: Path | None = None,
    deferred: bool = False,
    granian: bool = False,
) -> tuple[dict[str, Any], MemoryWatch, dict[str, Any]]:
    """The load on one receiver, then its catch-up and the check.

    `deferred`: the serve processes do not project (RECEIVER_PROJECTOR=false); once
    the load is over, `receiver worker` drains what they stored. `granian`: the app
    served by granian instead of `receiver serve`'s uvicorn.
    """
    port = free_port()
    label = "baseline" if source else "deferred" if deferred else "receiver"
    label += "-granian" if granian else ""
    env = {"RECEIVER_PROJECTOR": "false"} if deferred else {}
    log = folder / f"{label}-{workers}.log"
    server = serve_receiver(url, port, workers, log, source=source, env=env, granian=granian)
    base = f"http://127.0.0.1:{port}"
    worker = None
    try:
        wait_ready(f"{base}/readyz", server)
        watch = MemoryWatch(server.pid)
        cpu = CpuWatch(server.pid)
        started = time.perf_counter()
        result = run_wrk(base, requests, duration, watch)
        result["backlog_at_end"] = asyncio.run(backlog_now(url))
        if deferred:
            worker = start_worker(url, folder / f"worker-{workers}.log")
        result["catch_up_s"] = asyncio.run(catch_up(url))
        result["cpu"] = cpu.per_request(result["rate"] * duration, time.perf_counter() - started)
        answered = result["rate"] * duration
        result["end_to_end"] = answered / (duration + result["catch_up_s"])
        result["batches"] = batches(base)
        sent = sent_lines(result["threads"], len(deliveries), 2)
        check = asyncio.run(settle_and_check(url, f"{base}/webhooks/callr", deliveries, sent))
    finally:
        stop(server)
        if worker is not None:
            stop(worker)
    return result, watch, check


def start_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    """`receiver worker` with its projector alone."""
    env = {**os.environ, "RECEIVER_DATABASE_URL": url, "RECEIVER_DISPATCHER": "false"}
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "receiver", "worker"], env=env, stdout=sink, stderr=sink
        )


def migrate_with(source: Path, url: str) -> None:
    """`receiver migrate` of the release checked out at `source`."""
    subprocess.run(
        [sys.executable, "-m", "receiver", "migrate"],
        env={**os.environ, "RECEIVER_DATABASE_URL": url, "PYTHONPATH": str(source)},
        check=True,
        capture_output=True,
    )


def run_without_writes(
    url: str, workers: int, requests: Path, duration: int, folder: Path
) -> dict[str, Any]:
    """The same load on the receiver with its writer answering without the database."""
    port = free_port()
    server = serve_receiver(url, port, workers, folder / f"no-writes-{workers}.log", writes=False)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", server)
        cpu = CpuWatch(server.pid)
        started = time.perf_counter()
        result = run_wrk(base, requests, duration, None)
        result["cpu"] = cpu.per_request(result["rate"] * duration, time.perf_counter() - started)
    finally:
        stop(server)
    return result


def batches(base: str) -> dict[str, float]:
    """The writer's batches during the run, from /metrics (summed over the workers)."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    samples = {
        (sample.name, sample.labels.get("le")): sample.value
        for family in text_string_to_metric_families(text)
        if family.name in ("receiver_batch_size", "receiver_batch_commit_seconds")
        for sample in family.samples
    }
    count = samples[("receiver_batch_size_count", None)]
    if not count:
        return {"count": 0}
    seconds = sorted(
        (float(le), value)
        for (name, le), value in samples.items()
        if name == "receiver_batch_commit_seconds_bucket" and le is not None
    )
    # The first bucket bound that 99% of the batches fall under.
    p99 = next(le for le, value in seconds if value >= 0.99 * count)
    return {
        "count": count,
        "mean_size": samples[("receiver_batch_size_sum", None)] / count,
        "mean_ms": 1000 * samples[("receiver_batch_commit_seconds_sum", None)] / count,
        "p99_ms_at_most": 1000 * p99,
    }


async def _durability(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        values = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("fsync", "synchronous_commit", "full_page_writes")
        }
    finally:
        await conn.close()
    if values["fsync"] != "on" or values["synchronous_commit"] != "on":
        raise RuntimeError(f"the benchmark needs a durable database, got {values}")
    return values


def compare_generators(folder: Path, deliveries_plan: Plan, duration: int) -> dict[str, float]:
    """The bare app driven by wrk and by `receiver simulate`, both at 64 connections."""
    port = free_port()
    bare = serve_bare(folder, port, 1)
    try:
        wait_ready(f"http://127.0.0.1:{port}/", bare)
        report = asyncio.run(
            simulate(
                f"http://127.0.0.1:{port}/webhooks/callr",
                deliveries_plan,
                signer=Signer(SECRET),
                concurrency=CONNECTIONS,
                duration=duration,
            )
        )
    finally:
        stop(bare)
    return {"simulate": report.requests / report.elapsed}


def checkout(rev: str, folder: Path) -> Path:
    """A worktree of this repository at `rev`, under `folder`."""
    tree = folder / f"baseline-{rev}"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), rev],
        cwd=HERE.parent,
        check=True,
        capture_output=True,
    )
    return tree


def report(result: dict[str, Any], duration: int, baseline_rev: str | None) -> None:
    """One worker count's figures, as lines to read."""
    workers = result["workers"]
    r, m, b, c = result["receiver"], result["minimal"], result["bare"], result["check"]

    def latency(run: dict[str, Any]) -> str:
        return f"p50 {run['p50']:.1f} ms, p99 {run['p99']:.1f} ms, max {run['max']:.0f} ms"

    print(
        f"workers {workers}: bare {b['rate']:,.0f}/s ({latency(b)});"
        f" minimal durable {m['rate']:,.0f}/s ({m['rate'] / b['rate']:.2f} of bare,"
        f" {latency(m)});"
        f" receiver {r['rate']:,.0f}/s ({result['ratio']:.2f} of bare,"
        f" {result['ratio_to_minimal']:.2f} of minimal durable, {latency(r)},"
        f" p99 {r['p99'] / m['p99']:.2f}x minimal's); answers {r['answers']};"
        f" backlog at the end of the load {r['backlog_at_end']:,},"
        f" caught up {r['catch_up_s']:.1f} s later; end to end {r['end_to_end']:,.0f}/s;"
        f" CPU a request: receiver {r['cpu']['receiver_us']:.0f} µs, PostgreSQL"
        f" {r['cpu']['postgres_us']:.0f} µs, machine {r['cpu']['idle']:.0%} idle;"
        f" answer batches: {r['batches'].get('mean_size', 0):.1f} events,"
        f" {r['batches'].get('mean_ms', 0):.1f} ms on average,"
        f" p99 <= {r['batches'].get('p99_ms_at_most', 0):.0f} ms;"
        f" peak RSS {result['peak_rss_mb_per_process']:.0f} MB per worker"
        f" ({result['peak_rss_mb_total']:.0f} MB in all); check"
        f" {'OK' if c['ok'] else 'FAILED'}: {c}",
        flush=True,
    )
    later = result["deferred"]
    if later is not None:
        print(
            f"workers {workers}, projection deferred to `receiver worker` after the load:"
            f" {later['rate']:,.0f}/s ({later['rate'] / m['rate']:.2f} of minimal durable,"
            f" {latency(later)}, p99 {later['p99'] / m['p99']:.2f}x minimal's);"
            f" {later['backlog_at_end']:,} events drained in {later['catch_up_s']:.1f} s"
            f" ({later['backlog_at_end'] / max(later['catch_up_s'], 1e-9):,.0f}/s);"
            f" end to end {later['end_to_end']:,.0f}/s;"
            f" check {'OK' if later['check']['ok'] else 'FAILED'}",
            flush=True,
        )
    served = result["granian"]
    if served is not None:
        print(
            f"workers {workers}, granian, projection deferred: {served['rate']:,.0f}/s"
            f" ({served['rate'] / m['rate']:.2f} of minimal durable, {latency(served)},"
            f" p99 {served['p99'] / m['p99']:.2f}x minimal's);"
            f" check {'OK' if served['check']['ok'] else 'FAILED'}",
            flush=True,
        )
    previous = result["baseline"]
    if previous is not None:
        print(
            f"workers {workers}, baseline {baseline_rev}: {previous['rate']:,.0f}/s"
            f" ({previous['rate'] / b['rate']:.2f} of bare,"
            f" {previous['rate'] / m['rate']:.2f} of minimal durable, {latency(previous)});"
            f" end to end {previous['end_to_end']:,.0f}/s"
            f" (the receiver's is {r['end_to_end'] / previous['end_to_end']:.2f}x);"
            f" check {'OK' if previous['check']['ok'] else 'FAILED'}",
            flush=True,
        )
    ceiling = result["without_writes"]
    if ceiling is not None:
        print(
            f"workers {workers} without database writes: {ceiling['rate']:,.0f}/s,"
            f" ratio {ceiling['rate'] / b['rate']:.2f}; p99 {ceiling['p99']:.1f} ms;"
            f" CPU a request: receiver {ceiling['cpu']['receiver_us']:.0f} µs,"
            f" machine {ceiling['cpu']['idle']:.0%} idle",
            flush=True,
        )


def report_medians(rounds: list[dict[str, Any]]) -> None:
    """The median over the rounds of each rate's ratio to the minimal durable receiver's in
    the same round: on a shared machine whose speed drifts from minute to minute, one
    round's ratio can be off by a tenth."""
    medians = []
    for kind in ("receiver", "deferred", "granian", "baseline"):
        ratios = sorted(r[kind]["rate"] / r["minimal"]["rate"] for r in rounds if r[kind])
        if ratios:
            listed = ", ".join(f"{ratio:.2f}" for ratio in ratios)
            medians.append(f"{kind} {statistics.median(ratios):.2f} ({listed})")
    print(
        f"workers {rounds[0]['workers']}, {len(rounds)} rounds, median ratio to the minimal"
        f" durable receiver: {'; '.join(medians)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per run")
    parser.add_argument("--messages", type=int, default=60_000, help="SMS in the plan")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="runs of each worker count; with more than one, the median of each ratio too",
    )
    parser.add_argument("--generators", action="store_true", help="also time the simulator")
    parser.add_argument(
        "--deferred",
        action="store_true",
        help="also run the receiver with no projector during the load, then drain with"
        " `receiver worker`: the answer path alone, and the catch-up rate",
    )
    parser.add_argument(
        "--granian",
        action="store_true",
        help="also run the answer path alone (as --deferred) under granian instead of uvicorn",
    )
    parser.add_argument(
        "--baseline-rev",
        help="also run the receiver of this git commit under the same load (a worktree)",
    )
    parser.add_argument(
        "--without-writes",
        action="store_true",
        help="also run the receiver with its writer answering without the database"
        " (bench/no_writes.py): the ceiling of its own code",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: scripts/system-packages installs it")
    plan = Plan(args.messages, Mix(odd=0), seed=11)
    deliveries = list(plan.deliveries())
    folder = Path(tempfile.mkdtemp(prefix="receiver-bench-"))
    requests = folder / "requests.tsv"
    write_requests(deliveries, requests)
    print(
        f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores; plan of {args.messages:,} SMS,"
        f" {len(deliveries):,} deliveries; wrk -t2 -c{CONNECTIONS} -d{args.duration}s"
    )
    results = []
    baseline = checkout(args.baseline_rev, folder) if args.baseline_rev else None
    try:
        with bench_server() as postgres:
            for workers in (int(w) for w in args.workers.split(",")):
                rounds = []
                for _ in range(args.rounds):
                    result = one_run(
                        postgres,
                        workers,
                        args.duration,
                        deliveries,
                        requests,
                        folder,
                        without_writes=args.without_writes,
                        baseline=baseline,
                        deferred=args.deferred,
                        granian=args.granian,
                    )
                    rounds.append(result)
                    report(result, args.duration, args.baseline_rev)
                if len(rounds) > 1:
                    report_medians(rounds)
                results += rounds
    finally:
        if baseline is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], check=False)
    if args.generators:
        rates = compare_generators(folder, Plan(args.messages, Mix(odd=0), seed=12), args.duration)
        wrk_rate = next(r["bare"]["rate"] for r in results if r["workers"] == 1)
        print(
            f"load generators against the bare app (1 worker): wrk {wrk_rate:,.0f}/s,"
            f" receiver simulate {rates['simulate']:,.0f}/s"
        )
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"details: {folder / 'results.json'}")
    checks = [r["check"] for r in results]
    checks += [
        r[kind]["check"] for r in results for kind in ("deferred", "granian", "baseline") if r[kind]
    ]
    if not all(check["ok"] for check in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
