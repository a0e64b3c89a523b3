"""Replies against a flood of status callbacks: does one handler's backlog delay another's?

`--queued` status callbacks (100,000) wait for handler A, which is down (it refuses
connections) or hangs (accepts and never answers, each attempt cut at its 2 s
timeout). Then MO replies for handler B are sent one at a time, and the time from
each 200 to CALLR to B's receipt is measured (the projector and the dispatcher
woken as in production). The dispatcher claims a share per handler and kind, and
a handler holds at most half of its requests in flight.

    .venv/bin/python bench/fairness.py [--queued 100000] [--replies 50] [--mode down|hang]
        [--max-in-flight N]   # handler A's own limit (default: half the dispatcher's)
    RECEIVER_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres ...
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.app import create_app
from receiver.forwarding.handlers import NewHandler, add_handler
from receiver.logging import configure_logging
from receiver.settings import Settings
from testkit.callr_events import mo_event
from testkit.handler_server import HandlerServer, handler_server, queue_status_callbacks, wait_for
from testkit.support import bench_server, running, scratch_database

TOKEN = "bench-token-0123456789"


async def hanging_server() -> tuple[asyncio.AbstractServer, str]:
    """Accepts connections and never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):  # until the client gives up and closes
            pass
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/"


async def measure(
    url: str, queued: int, replies: int, mode: str, max_in_flight: int | None = None
) -> tuple[list[float], int]:
    hang, hang_url = await hanging_server()
    async with handler_server() as team_b:
        conn = await asyncpg.connect(url)
        flooded = hang_url if mode == "hang" else "http://127.0.0.1:9/"
        team_a, _ = await add_handler(
            conn,
            NewHandler(
                user_data="42",
                default=False,
                url=flooded,
                events=("status",),
                timeout=2.0,
                max_in_flight=max_in_flight,
            ),
        )
        await add_handler(conn, NewHandler(user_data="team-b", default=False, url=team_b.url("/b")))
        await conn.close()
        await queue_status_callbacks(url, team_a.id, queued)
        settings = Settings(database_url=url, callr_url_token=TOKEN, log_level="warning")
        latencies = []
        async with running(create_app(settings)) as client:
            await asyncio.sleep(1.0)  # the dispatcher is at work on A's queue
            for n in range(replies):
                body = mo_event(f"b-{n}", f"B{n:05d}", sender=f"+3361{n:06d}", user_data="team-b")
                response = await client.post(f"/webhooks/callr/{TOKEN}", content=body)
                acknowledged = time.monotonic()
                assert response.status_code == 200, response.text
                await wait_for(partial(arrived, team_b, n + 1), seconds=30)
                latencies.append((team_b.on("/b")[n].at - acknowledged) * 1000)
                await asyncio.sleep(0.05)
            conn = await asyncpg.connect(url)
            tried = await conn.fetchval(
                "SELECT count(*) FROM forward_attempts a JOIN forwards f ON f.id = a.forward_id"
                " WHERE f.handler_id = $1",
                team_a.id,
            )
            await conn.close()
    hang.close()
    return latencies, tried


def arrived(handler: HandlerServer, count: int) -> bool:
    return len(handler.on("/b")) >= count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--replies", type=int, default=50)
    parser.add_argument("--mode", choices=("down", "hang"), default="down")
    parser.add_argument("--max-in-flight", type=int, default=None)
    args = parser.parse_args()
    configure_logging(level="warning")
    with bench_server() as postgres, scratch_database(postgres) as name:
        latencies, tried = asyncio.run(
            measure(
                postgres.url_for(name), args.queued, args.replies, args.mode, args.max_in_flight
            )
        )
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    print(
        f"{args.queued:,} status callbacks queued for a handler that"
        f" {'is down' if args.mode == 'down' else 'hangs'}"
        + (f" (max_in_flight {args.max_in_flight})" if args.max_in_flight else "")
        + f" ({tried:,} attempts made at them meanwhile); {len(latencies)} replies to another"
        f" handler, ack -> handler: p50 {quantiles[49]:.1f} ms, p90 {quantiles[89]:.1f} ms,"
        f" p99 {quantiles[98]:.1f} ms, max {max(latencies):.1f} ms"
    )


if __name__ == "__main__":
    main()
