"""Latency of the query API on a seeded database (bench/seed.py), through a real `receiver serve`.

One client, requests one after another, so each figure is a request's own latency
over loopback HTTP: one message by id; a filtered list page; pages deep into a
cursor; stats over one day (counted live) and over 30 days (whole days counted
ahead, the first time without). Targets (2-core machine): p99 under 5 ms by id,
under 20 ms for a list page at any depth, 250 ms for one day of stats, 2 s for 30
days.

    .venv/bin/python bench/queries.py --database-url URL
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.seed import END, NETWORKS, USER_DATA
from receiver.projection.daily_stats import maintain

TOKEN = "bench-api-token-0123456789"
TARGETS_MS = {
    "message by id": 5,
    "filtered list page": 20,
    "page deep into a cursor": 20,
    "stats, one day": 250,
    "stats, 30 days, first time": 2000,
    "stats, 30 days": 2000,
    "stats, 30 days by network": 2000,
    "stats, 30 days by user_data": 2000,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def timed(
    client: httpx.Client, url: str, params: dict[str, str] | None = None
) -> tuple[float, Any]:
    started = time.perf_counter()
    response = client.get(url, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, (url, params, response.text)
    return elapsed, response.json()


async def count_ahead(url: str) -> tuple[int, float]:
    """What the service's background task does: count the marked and recent days."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        days = await maintain(conn)
        return days, time.perf_counter() - started
    finally:
        await conn.close()


def run(base: str, url: str, ids: list[str], rng: random.Random) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in TARGETS_MS}
    headers = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for sms_id in ids:
            results["message by id"].append(timed(client, f"/api/v1/messages/{sms_id}")[0])
        for _ in range(300):
            params = {
                "status": rng.choice(["delivered", "failed", "expired"]),
                "network": rng.choice(NETWORKS),
            }
            if rng.random() < 0.5:
                params = {"user_data": rng.choice(USER_DATA[:50])}
            results["filtered list page"].append(timed(client, "/api/v1/messages", params)[0])
        cursor: str | None = None
        for _ in range(500):  # 50,000 messages deep
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            elapsed, page = timed(client, "/api/v1/messages", params)
            results["page deep into a cursor"].append(elapsed)
            cursor = page["next_cursor"]
        for _ in range(40):
            # Not on a day boundary: all 24 hours are counted live.
            day = END - timedelta(days=rng.randint(1, 88), hours=rng.randint(1, 23))
            params = {"since": day.isoformat(), "until": (day + timedelta(days=1)).isoformat()}
            results["stats, one day"].append(timed(client, "/api/v1/stats", params)[0])
        # The first time, nothing is counted ahead: the 30 days are counted live.
        for offset in (30, 60):
            start = END - timedelta(days=offset, hours=rng.randint(1, 23))
            params = {"since": start.isoformat(), "until": (start + timedelta(days=30)).isoformat()}
            results["stats, 30 days, first time"].append(timed(client, "/api/v1/stats", params)[0])
        days, seconds = asyncio.run(count_ahead(url))
        print(
            f"counted {days} days ahead in {seconds:.1f} s ({seconds / max(days, 1):.2f} s a day)"
        )
        for name, group in (
            ("stats, 30 days", None),
            ("stats, 30 days by network", "network"),
            ("stats, 30 days by user_data", "user_data"),
        ):
            for _ in range(20):
                start = END - timedelta(days=rng.randint(30, 59), hours=rng.randint(1, 23))
                params = {
                    "since": start.isoformat(),
                    "until": (start + timedelta(days=30)).isoformat(),
                    **({"group_by": group} if group else {}),
                }
                results[name].append(timed(client, "/api/v1/stats", params)[0])
    return results


async def sample_ids(url: str, count: int) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        # Start from nothing counted ahead, as a new deployment on old data would.
        await conn.execute("TRUNCATE stats_rows, stats_days")
        rows = await conn.fetch(
            "SELECT sms_id FROM messages TABLESAMPLE SYSTEM (0.5) LIMIT $1", count
        )
        return [row["sms_id"].upper() for row in rows]
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    port = free_port()
    env = {
        **os.environ,
        "RECEIVER_DATABASE_URL": args.database_url,
        "RECEIVER_API_TOKENS": TOKEN,
        "RECEIVER_CALLR_URL_TOKEN": "bench-url-token-0123456789",
        "RECEIVER_DISPATCHER": "false",
        "RECEIVER_LOG_LEVEL": "warning",
        "RECEIVER_API_STATEMENT_TIMEOUT": "30",
        # No counting ahead during the run: the first-time figure is the cold one.
        "RECEIVER_STATS_KEEP_INTERVAL": "86400",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        ids = asyncio.run(sample_ids(args.database_url, 2000))
        results = run(base, args.database_url, ids, random.Random(5))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{datetime.now(UTC):%Y-%m-%d}, one client, sequential requests over loopback")
    print(f"{'query':<30}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'target':>9}")
    for name, values in results.items():
        q = (
            statistics.quantiles(values, n=100, method="inclusive")
            if len(values) > 1
            else values * 99
        )
        ok = "ok" if q[98] < TARGETS_MS[name] else "MISSED"
        print(
            f"{name:<30}{len(values):>6}{q[49]:>9.1f}{q[98]:>9.1f}{max(values):>9.1f}"
            f"{TARGETS_MS[name]:>7} {ok}"
        )


if __name__ == "__main__":
    main()
