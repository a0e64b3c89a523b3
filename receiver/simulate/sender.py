"""Sending a plan to a receiver the way CALLR does.

Each delivery is retried on any answer that is not a 2xx (and on a connection
error) with a higher `try`, a bounded number of times within a bounded time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time

import httpx
import orjson

from receiver.simulate.plan import Delivery, Plan
from receiver.simulate.report import Report

SIGNATURE_HEADER = "X-CALLR-HmacSignature"
ALGORITHMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
ALGORITHMS["md5"] = hashlib.md5


class Signer:
    """The headers of one request: the JSON type, and CALLR's signature when a secret is set."""

    def __init__(self, secret: str | None, algorithm: str = "sha256") -> None:
        self.secret = secret.encode() if secret else None
        self.digest = ALGORITHMS[algorithm]

    def headers(self, body: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.secret is not None:
            mac = hmac.new(self.secret, body, self.digest).digest()
            headers[SIGNATURE_HEADER] = base64.b64encode(mac).decode()
        return headers


def _kept(response: httpx.Response) -> bool:
    try:
        return bool(response.json().get("stored"))
    except ValueError:
        return False


async def simulate(
    url: str,
    plan: Plan,
    *,
    signer: Signer,
    concurrency: int = 16,
    duration: float = 60.0,
    max_tries: int = 5,
    retry_within: float = 30.0,
) -> Report:
    """Send the plan's deliveries to `url`, `concurrency` at a time, for at most `duration` s."""
    report = Report()
    queue: asyncio.Queue[Delivery | None] = asyncio.Queue(maxsize=concurrency * 4)
    started = time.perf_counter()
    deadline = started + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(limits=limits, timeout=15.0) as client:

        async def send(delivery: Delivery) -> None:
            first = time.perf_counter()
            for attempt in range(max_tries):
                body = orjson.dumps(delivery.tried(attempt))
                sent = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=signer.headers(body))
                    answer = str(response.status_code)
                    if response.status_code == 503 and "retry-after" not in response.headers:
                        answer = "503 without Retry-After"
                except httpx.HTTPError as error:
                    answer = type(error).__name__
                report.requests += 1
                report.latencies.append(time.perf_counter() - sent)
                report.answers[answer] += 1
                if answer.startswith("2") or (
                    # An invalid event is refused and kept: that is its acknowledgement.
                    delivery.kind == "invalid" and answer == "400" and _kept(response)
                ):
                    report.acknowledge(delivery)
                    return
                if time.perf_counter() - first > retry_within or attempt + 1 == max_tries:
                    break
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
            report.unacknowledged += 1

        async def worker() -> None:
            while (delivery := await queue.get()) is not None:
                await send(delivery)

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            for delivery in plan.deliveries():
                if time.perf_counter() >= deadline:
                    break
                report.planned += 1
                await queue.put(delivery)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
    report.elapsed = time.perf_counter() - started
    return report
