"""Latency of the console's pages on a seeded database, through a real `receiver serve`.

The database is the query benchmark's (bench/seed.py, 10 million messages over 90
days), plus what the overview reads for "now": a day of messages created in the
last 24 hours (bench/seed.py --end now --days 1) and a day of webhook traffic
(events and deliveries, written here with `--traffic`). One signed-in client,
requests one after another over loopback; the figure is each page's own latency,
HTML rendering included. Target: p99 under 300 ms for every page.

    .venv/bin/python bench/seed.py --database-url URL --messages 111000 \\
        --end "$(date -u +%Y-%m-%dT%H:%M:%S+00:00)" --days 1 --offset 20000000 --seed 9
    .venv/bin/python bench/console.py --database-url URL --traffic
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.seed import NETWORKS, USER_DATA
from bench.throughput import free_port, wait_ready

ADMIN = "bench-console-admin-token"
TARGET_MS = 300

# A day of webhooks ending now: four reports a message, one in ten delivered twice,
# one in a thousand invalid, one in two thousand with a conflicting second delivery.
_TRAFFIC = """
INSERT INTO events (event_id, type, emitted_at, received_at, state, reason, sms_id,
                    fingerprint, body)
SELECT 'bench-traffic-' || n, 'sms.mt.status_update', at, at,
    CASE WHEN n % 1000 = 0 THEN 'invalid' ELSE 'processed' END,
    CASE WHEN n % 1000 = 0 THEN 'body is not valid JSON' END,
    NULL, '\\x00'::bytea, convert_to('{"event_id": "bench-traffic-' || n || '"}', 'UTF8')
FROM (SELECT n, now() - make_interval(secs => n * 86400.0 / $1) AS at
      FROM generate_series(1, $1) AS n) s
ON CONFLICT DO NOTHING
"""
_TRAFFIC_DELIVERIES = """
INSERT INTO deliveries (event_id, attempt, fingerprint, conflict, received_at, headers, body)
SELECT e.event_id, k, '\\x00'::bytea, k = 2, e.received_at + make_interval(secs => k * 30),
    '{}'::jsonb, NULL
FROM events e CROSS JOIN generate_series(0, 2) AS k
WHERE e.event_id LIKE 'bench-traffic-%'
  AND (k = 0 OR (k = 1 AND hashtext(e.event_id) % 10 = 0)
       OR (k = 2 AND hashtext(e.event_id) % 2000 = 0))
ON CONFLICT DO NOTHING
"""


async def add_traffic(url: str, events: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DELETE FROM events WHERE event_id LIKE 'bench-traffic-%'")
        started = time.perf_counter()
        await conn.execute(_TRAFFIC, events)
        await conn.execute(_TRAFFIC_DELIVERIES)
        await conn.execute("VACUUM (ANALYZE) events")
        await conn.execute("VACUUM (ANALYZE) deliveries")
        print(f"a day of traffic: {events:,} events in {time.perf_counter() - started:.1f} s")
    finally:
        await conn.close()


async def samples(url: str) -> tuple[list[str], list[str]]:
    """Ids (upper case, as people paste them) and the numbers of some outbound SMS."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT sms_id, to_number FROM messages TABLESAMPLE SYSTEM (1)"
            " WHERE direction = 'outbound' LIMIT 200"
        )
    finally:
        await conn.close()
    return [r["sms_id"].upper() for r in rows], [r["to_number"] for r in rows]


def measure(
    client: httpx.Client, pages: dict[str, Callable[[], tuple[str, dict[str, str]]]], n: int
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in pages}
    for name, make in pages.items():
        for _ in range(n):
            path, params = make()
            started = time.perf_counter()
            response = client.get(path, params=params)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code in (200, 303), (path, params, response.text[:500])
            results[name].append(elapsed)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--traffic", action="store_true", help="write a day of webhook traffic")
    parser.add_argument("--events-a-day", type=int, default=450_000)
    parser.add_argument("-n", type=int, default=40, help="requests per page")
    args = parser.parse_args()
    if args.traffic:
        asyncio.run(add_traffic(args.database_url, args.events_a_day))
    ids, numbers = asyncio.run(samples(args.database_url))
    rng = random.Random(3)
    port = free_port()
    env = {
        **os.environ,
        "RECEIVER_DATABASE_URL": args.database_url,
        "RECEIVER_ADMIN_TOKENS": ADMIN,
        "RECEIVER_CALLR_URL_TOKEN": "bench-url-token-0123456789",
        "RECEIVER_DISPATCHER": "false",
        "RECEIVER_LOG_LEVEL": "warning",
        "RECEIVER_API_STATEMENT_TIMEOUT": "30",
        "RECEIVER_STATS_KEEP_INTERVAL": "86400",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    pages: dict[str, Callable[[], tuple[str, dict[str, str]]]] = {
        "overview, last hour": lambda: ("/console", {}),
        "overview, last day": lambda: ("/console", {"window": "day"}),
        "messages, newest": lambda: ("/console/messages", {}),
        "messages, a whole number": lambda: ("/console/messages", {"q": rng.choice(numbers)}),
        "messages, a number's start": lambda: (
            "/console/messages",
            {"q": rng.choice(numbers)[: rng.choice((5, 7, 9))]},
        ),
        "messages, the number of every MO": lambda: ("/console/messages", {"q": "+33644630010"}),
        "messages, user_data": lambda: ("/console/messages", {"q": rng.choice(USER_DATA)}),
        "messages, status and network": lambda: (
            "/console/messages",
            {"status": rng.choice(["failed", "expired"]), "network": rng.choice(NETWORKS)},
        ),
        "messages, an id (redirect)": lambda: ("/console/messages", {"q": rng.choice(ids)}),
        "one message": lambda: (f"/console/messages/{rng.choice(ids)}", {}),
        "events, invalid": lambda: ("/console/events", {"kind": "invalid"}),
        "events, conflicts": lambda: ("/console/events", {"kind": "conflict"}),
        "forwards, dead": lambda: ("/console/forwards", {"state": "dead"}),
        "handlers": lambda: ("/console/handlers", {}),
    }
    try:
        wait_ready(f"{base}/readyz", server)
        with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as client:
            form = client.get("/console/login").text
            csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            signed_in = client.post("/console/login", data={"token": ADMIN, "csrf": csrf})
            assert signed_in.status_code == 303, signed_in.text
            measure(client, pages, 2)  # warm the caches and the prepared statements
            results = measure(client, pages, args.n)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{datetime.now(UTC):%Y-%m-%d}, one signed-in client, sequential requests over loopback")
    print(f"{'page':<36}{'n':>5}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  target {TARGET_MS} ms")
    for name, values in results.items():
        q = statistics.quantiles(values, n=100, method="inclusive")
        ok = "met" if q[98] < TARGET_MS else "MISSED"
        print(f"{name:<36}{len(values):>5}{q[49]:>9.1f}{q[98]:>9.1f}{max(values):>9.1f}  {ok}")


if __name__ == "__main__":
    main()
