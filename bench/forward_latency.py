"""Time from an MO's acknowledgement (the 200 to CALLR) to its arrival at the handler.

The projector and the dispatcher are idle between MOs, so what is measured is the
wake-up path, not throughput: the writer's commit wakes the projector, whose
commit of the MO's projection and forward wakes the dispatcher (NOTIFY), which
posts to the handler. Both poll fallbacks are set to 30 s, so a figure far below
that can only come from the wake-ups.

    .venv/bin/python bench/forward_latency.py [--count 200]
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
from testkit.handler_server import HandlerServer, handler_server, wait_for
from testkit.support import bench_server, running, scratch_database

TOKEN = "bench-token-0123456789"


def arrived(handler: HandlerServer, count: int) -> bool:
    return len(handler.received) >= count


async def measure(url: str, count: int) -> list[float]:
    async with handler_server() as handler:
        conn = await asyncpg.connect(url)
        await add_handler(conn, NewHandler(user_data="42", default=False, url=handler.url("/h")))
        await conn.close()
        settings = Settings(
            database_url=url,
            callr_url_token=TOKEN,
            dispatch_poll_interval=30,
            projector_poll_interval=30,
        )
        latencies = []
        async with running(create_app(settings)) as client:
            await asyncio.sleep(0.5)  # the dispatcher is listening
            for n in range(count):
                body = mo_event(f"lat-{n}", f"LAT{n:05d}", sender=f"+1{n}", user_data="42")
                response = await client.post(f"/webhooks/callr/{TOKEN}", content=body)
                acknowledged = time.monotonic()
                assert response.status_code == 200, response.text
                # The arrival time is the handler's own stamp: polling does not blur it.
                await wait_for(partial(arrived, handler, n + 1))
                latencies.append((handler.received[n].at - acknowledged) * 1000)
                await asyncio.sleep(0.02)  # idle again
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    configure_logging(level="warning")
    with bench_server() as postgres, scratch_database(postgres) as name:
        latencies = asyncio.run(measure(postgres.url_for(name), args.count))
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"{len(latencies)} MOs, projector and dispatcher idle between them, polls 30 s")
    print(
        f"ack -> handler: p50 {quantiles[49]:.1f} ms, p90 {quantiles[89]:.1f} ms, "
        f"p99 {quantiles[98]:.1f} ms, max {max(latencies):.1f} ms"
    )


if __name__ == "__main__":
    main()
