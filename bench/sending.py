"""Sending through misbehaving answers: 1,000 SMS, none lost, none twice; the 202's latency.

One run, against the fake CALLR on loopback (testkit/fake_callr.py) and a real uvicorn:

1. Chaos: 1,000 sends posted by 50 concurrent clients while the fake cuts 10% of
   its answers after creating the SMS, answers 5% with 503 and 5% with 429 (its
   faults are drawn per request, retries included). Counted at the end: the SMS the
   fake created, each send's text among them once, every send `accepted` with the
   id of the SMS that carries its text.
2. The 202 under 50 concurrent clients (p50, p99), beside `POST /api/v1/sms/preview`
   measured the same way in the same run: the same token, JSON and checks, no write.
   The ratio is the cost of making a request durable.
3. The rate: 40 sends at the default `RECEIVER_CALLR_API_RATE` (5 a second): sends
   a second from the first try to the last answer.
4. With wrk (a load generator of its own, when installed): 50 connections post sends
   for 10 s to a receiver whose sender is off (the requests only made durable),
   then the preview the same way: requests a second and the 202's p99 against the
   route that writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.app import create_app
from receiver.logging import configure_logging
from receiver.settings import Settings
from testkit.fake_callr import FakeCallr, fake_callr
from testkit.support import bench_server, fetch, scratch_database, serving

TOKEN = "bench-send-token-0123456789"
CLIENTS = 50


def settings_for(url: str, callr: FakeCallr, **more: Any) -> Settings:
    return Settings(
        database_url=url,
        data_dir=Path("/tmp/receiver-bench-sending"),  # noqa: S108 (a bench's scratch)
        callr_url_token="bench-url-token-0123456789",  # noqa: S106 (loopback only)
        admin_tokens=(TOKEN,),
        log_level="warning",
        send_lookup_after=timedelta(seconds=2),
        send_unknown_after=timedelta(minutes=5),
        send_concurrency=16,
        **{**callr.settings(), **more},
    )


async def post_all(
    base: str, path: str, bodies: list[dict[str, Any]]
) -> tuple[list[float], Counter[int]]:
    """Post `bodies` with CLIENTS concurrent clients; each answer's seconds and the codes."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    seconds: list[float] = []
    codes: Counter[int] = Counter()
    headers = {"authorization": f"Bearer {TOKEN}"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                answer = await http.post(path, json=body)
                seconds.append(time.perf_counter() - started)
                codes[answer.status_code] += 1

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return seconds, codes


def quantiles(seconds: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(seconds, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


async def until_decided(url: str, count: int, limit: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        rows = await fetch(
            url,
            "SELECT count(*) AS n FROM sends WHERE state IN ('accepted', 'rejected', 'unknown')",
        )
        if rows[0]["n"] >= count:
            break
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


async def chaos(url: str, sends: int) -> dict[str, Any]:
    faults = ["drop"] * (sends // 10) + ["503"] * (sends // 20) + ["429"] * (sends // 20)
    faults += ["ok"] * (sends - len(faults))
    random.Random(7).shuffle(faults)
    async with fake_callr() as callr:
        callr.faults = faults
        async with serving(create_app(settings_for(url, callr))) as base:
            texts = [f"chaos {n}: votre code est {n:06d}" for n in range(sends)]
            bodies = [
                {"to": "+33612345678", "text": t, "user_data": f"u{n}"} for n, t in enumerate(texts)
            ]
            started = time.perf_counter()
            latencies, codes = await post_all(base, "/api/v1/sms", bodies)
            answered = time.perf_counter() - started
            decided = await until_decided(url, sends, limit=300)
            preview, preview_codes = await post_all(
                base, "/api/v1/sms/preview", [{"text": t} for t in texts]
            )
        rows = await fetch(url, "SELECT state, sms_id, text, attempts FROM sends")
    made = Counter(sms["text"] for sms in callr.created)
    by_text = {sms["text"]: sms["hash"].lower() for sms in callr.created}
    return {
        "codes": dict(codes),
        "preview_codes": dict(preview_codes),
        "created": len(callr.created),
        "twice": sum(1 for n in made.values() if n > 1),
        "missing": sum(1 for t in texts if t not in made),
        "states": dict(Counter(r["state"] for r in rows)),
        "wrong_id": sum(1 for r in rows if by_text.get(r["text"]) != r["sms_id"]),
        "attempts": sum(r["attempts"] for r in rows),
        "answered_s": answered,
        "decided_s": decided,
        "p50_p99": quantiles(latencies),
        "preview_p50_p99": quantiles(preview),
    }


async def rate(url: str, sends: int) -> float:
    async with fake_callr() as callr:
        settings = settings_for(url, callr, callr_api_rate=5.0)
        async with serving(create_app(settings)) as base:
            bodies = [{"to": "+33612345678", "text": f"rate {n}"} for n in range(sends)]
            await post_all(base, "/api/v1/sms", bodies)
            await until_decided(url, sends, limit=120)
    rows = await fetch(
        url,
        "SELECT min(attempted_at) AS first, max(attempted_at) AS last FROM sends"
        " WHERE text LIKE 'rate %'",
    )
    # The tries' starts: n of them span n - 1 intervals of the rate.
    span: timedelta = rows[0]["last"] - rows[0]["first"]
    return (sends - 1) / span.total_seconds()


async def with_wrk(url: str, seconds: int) -> dict[str, dict[str, float]]:
    """Sends posted by wrk (50 connections) to a receiver with no sender, then previews."""
    found: dict[str, dict[str, float]] = {}
    async with fake_callr() as callr:
        settings = settings_for(url, callr, sender=False)
        async with serving(create_app(settings)) as base:
            for label, path in (("send", "/api/v1/sms"), ("preview", "/api/v1/sms/preview")):
                found[label] = await asyncio.to_thread(_wrk, base, path, seconds)
    return found


def _wrk(base: str, path: str, seconds: int) -> dict[str, float]:
    env = {**os.environ, "PATH_TO_POST": path, "TOKEN": TOKEN}
    done = subprocess.run(
        ["wrk", "-t2", f"-c{CLIENTS}", f"-d{seconds}s", "--latency", "-s",
         str(Path(__file__).parent / "wrk_json.lua"), base],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)[1])  # type: ignore[index]
    answers = re.findall(r'"(\d+)": (\d+)', done.stdout)
    return {
        "rate": rate,
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", done.stdout, re.M)[1]),  # type: ignore[index]
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", done.stdout, re.M)[1]),  # type: ignore[index]
        "other_answers": sum(int(n) for status, n in answers if status not in ("200", "202")),
    }


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--rate-sends", type=int, default=40)
    args = parser.parse_args()
    configure_logging(fmt="console", level="warning")
    with bench_server() as postgres:
        with scratch_database(postgres) as name:
            result = asyncio.run(chaos(postgres.url_for(name), args.sends))
        with scratch_database(postgres) as name:
            per_second = asyncio.run(rate(postgres.url_for(name), args.rate_sends))
        loaded = None
        if shutil.which("wrk"):
            with scratch_database(postgres) as name:
                loaded = asyncio.run(with_wrk(postgres.url_for(name), 10))
    p50, p99 = result["p50_p99"]
    q50, q99 = result["preview_p50_p99"]
    print(
        f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores: {args.sends:,} sends, answers"
        f" {result['codes']}; the fake created {result['created']:,} SMS, {result['twice']} twice,"
        f" {result['missing']} missing; states {result['states']}, {result['wrong_id']} with"
        f" another SMS's id, {result['attempts']:,} tries in all; all answered in"
        f" {result['answered_s']:.1f} s, all decided {result['decided_s']:.1f} s later."
        f"\n202 under {CLIENTS} clients: p50 {p50:.1f} ms, p99 {p99:.1f} ms; preview (no write)"
        f" p50 {q50:.1f} ms, p99 {q99:.1f} ms: p99 ratio {p99 / q99:.2f}."
        f"\nAt the default rate (5 a second): {per_second:.2f} sends a second"
        f" over {args.rate_sends} sends."
    )
    if loaded is not None:
        send, preview = loaded["send"], loaded["preview"]
        refused = send["other_answers"] + preview["other_answers"]
        print(
            f"wrk, {CLIENTS} connections, 10 s, no sender: sends {send['rate']:,.0f}/s, p50"
            f" {send['p50_ms']:.1f} ms, p99 {send['p99_ms']:.1f} ms; preview"
            f" {preview['rate']:,.0f}/s, p50 {preview['p50_ms']:.1f} ms, p99"
            f" {preview['p99_ms']:.1f} ms: the 202's p99 {send['p99_ms'] / preview['p99_ms']:.2f}"
            f" times; answers other than 2xx: {refused:.0f}"
        )


if __name__ == "__main__":
    main()
