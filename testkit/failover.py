"""A failover under load: webhooks at a steady rate to `receiver serve`, given a primary
and its standby in one URL; the primary stopped at once (`-m immediate`), the standby
promoted; then every event answered 2xx looked for on the new primary.

Shared by tests/reliability/test_failover.py (what must hold) and bench/failover.py
(the figures of docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import asyncpg
import httpx

from receiver.db import migrate
from receiver.status import Status
from testkit.callr_events import Step, v1_event
from testkit.cluster import Server, cluster_folder, execute, free_port, wait_for_sync

TOKEN = "failover-url-token-0123456789"


@dataclass
class Failover:
    """What a run sent, what was answered, and what the new primary holds."""

    synchronous: bool
    sent: int = 0
    answered: int = 0
    """Events answered 2xx."""
    found: int = 0
    """Of those, the events the promoted standby holds."""
    others: Counter[int] = field(default_factory=Counter)
    """Answers other than 2xx, by status (0: no answer)."""
    without_retry_after: int = 0
    seconds_without_2xx: float = 0.0
    """The longest time between two 2xx answers (the failover's)."""
    drained: bool = False
    """The projection's queue emptied on the new primary afterwards."""
    tracebacks: int = 0
    log: str = ""

    def read_log(self, log: Path) -> None:
        self.log = log.read_text()
        self.tracebacks = self.log.count("Traceback")

    @property
    def lost(self) -> int:
        return self.answered - self.found

    def line(self) -> str:
        return (
            f"{'sync' if self.synchronous else 'async'}: sent {self.sent}, 2xx {self.answered},"
            f" found after the failover {self.found} (lost {self.lost}), other answers"
            f" {dict(self.others)}, {self.seconds_without_2xx:.2f} s without a 2xx"
        )


async def run_failover(
    folder: Path, *, synchronous: bool, rate: float = 50.0, before: float = 4.0,
    after: float = 8.0, detect: float = 1.0,
) -> Failover:  # fmt: skip
    """One failover, webhooks at `rate` a second: `before` seconds, the primary stopped,
    `detect` seconds until the standby is promoted (what Patroni's loop takes), traffic
    on for `after` seconds more."""
    with cluster_folder() as root:
        primary, standby = Server(root, "primary"), Server(root, "standby1")
        primary.init()
        primary.start()
        try:
            await execute(primary.url(), "CREATE DATABASE receiver")
            await asyncio.to_thread(migrate.upgrade, primary.url("receiver"))
            standby.standby_of(primary)
            standby.start()
            if synchronous:
                for sql in (
                    "ALTER SYSTEM SET synchronous_standby_names = 'standby1'",
                    "ALTER SYSTEM SET synchronous_commit = 'on'",
                    "SELECT pg_reload_conf()",
                ):
                    await execute(primary.url(), sql)
                await asyncio.to_thread(wait_for_sync, primary, "standby1")
            url = (
                f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
                "/receiver?target_session_attrs=read-write"
            )
            result = Failover(synchronous)
            async with serving(url, folder) as (base, log):
                await _traffic(base, result, primary, standby, rate, before, after, detect)
                result.drained = await drained(standby.url("receiver"))
            result.read_log(log)
            return result
        finally:
            for server in (primary, standby):
                if server.running():
                    server.stop("immediate")


async def _traffic(
    base: str, result: Failover, primary: Server, standby: Server,
    rate: float, before: float, after: float, detect: float,
) -> None:  # fmt: skip
    async def fail_over() -> None:
        await asyncio.to_thread(primary.stop, "immediate")
        await asyncio.sleep(detect)
        await asyncio.to_thread(standby.promote)

    answered = await under_load(
        base, result, fail_over, rate=rate, before=before, seconds=before + detect + after
    )
    result.found = await found(standby.url("receiver"), answered)


async def under_load(
    base: str,
    result: Failover,
    fail_over: Callable[[], Awaitable[None]],
    *,
    rate: float,
    before: float,
    seconds: float,
    token: str = TOKEN,
) -> list[str]:
    """Webhooks to `base` at `rate` a second, one after the other, for `seconds`;
    `fail_over` started `before` seconds in. Counts into `result`; the ids of the
    events answered 2xx."""
    answered: list[str] = []
    times: list[float] = []
    stopped_at: list[float] = []

    async def later() -> None:
        await asyncio.sleep(before)
        stopped_at.append(time.monotonic())
        await fail_over()

    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    prefix = f"fo{time.time_ns() % 10**9}-"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        switch = asyncio.create_task(later())
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            event_id = f"{prefix}{n:06d}"
            body = v1_event(event_id, f"{prefix}{n:06d}", [Step(Status.CREATED, at)])
            result.sent += 1
            try:
                answer = await client.post(f"/webhooks/callr/{token}", content=body)
            except httpx.TransportError:
                result.others[0] += 1
            else:
                if answer.is_success:
                    answered.append(event_id)
                    times.append(time.monotonic())
                else:
                    result.others[answer.status_code] += 1
                    if answer.status_code == 503 and "retry-after" not in answer.headers:
                        result.without_retry_after += 1
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        await switch
    result.answered = len(answered)
    # The longest stretch between two 2xx answers: the failover's (traffic never stops).
    ends = [stopped_at[0], *times]
    result.seconds_without_2xx = max(b - a for a, b in pairwise(sorted(ends)))
    return answered


async def found(url: str, event_ids: list[str]) -> int:
    """How many of `event_ids` the database at `url` holds."""
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM events WHERE event_id = ANY($1::text[])", event_ids
        )
        return count
    finally:
        await conn.close()


async def drained(url: str, seconds: float = 30.0) -> bool:
    """Whether the projection's queue at `url` empties within `seconds`."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM projection_pending)"):
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await conn.close()


class serving:
    """`receiver serve` on a free port against `url`: its base URL and its log."""

    def __init__(self, url: str, folder: Path, token: str = TOKEN) -> None:
        self.url, self.folder, self.token = url, folder, token
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> tuple[str, Path]:
        port = free_port()
        log = self.folder / "receiver.log"
        self.process = await asyncio.to_thread(self._start, port, log)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=1) as client:
            for _ in range(300):
                assert self.process.poll() is None, log.read_text()[-3000:]
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return base, log
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("receiver serve was not ready in 30 s")

    def _start(self, port: int, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as sink:
            return subprocess.Popen(
                [sys.executable, "-m", "receiver", "serve", "--port", str(port)],
                env={
                    **os.environ,
                    "RECEIVER_DATABASE_URL": self.url,
                    "RECEIVER_CALLR_URL_TOKEN": self.token,
                    "RECEIVER_LOG_FORMAT": "json",
                    "RECEIVER_DATA_DIR": str(self.folder / "data"),
                },
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            await asyncio.to_thread(self.process.wait, 30)
