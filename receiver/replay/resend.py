"""`replay --to URL`: stored events, byte for byte with their signature, to another receiver."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from receiver.db.engine import Pool, Record
from receiver.replay.paging import FILTER_SQL, EventFilter

# Each event with the headers of its first delivery (never a conflicting one): the
# signature there is the signature of these exact bytes.
_PAGE = f"""
SELECT e.event_id, e.received_at, e.body, d.headers
FROM events e
LEFT JOIN LATERAL (
    SELECT headers FROM deliveries
    WHERE event_id = e.event_id AND NOT conflict ORDER BY id LIMIT 1
) d ON true
WHERE {FILTER_SQL}
  AND ($7::timestamptz IS NULL OR (e.received_at, e.event_id) > ($7, $8::text))
ORDER BY e.received_at, e.event_id
LIMIT $9
"""

_RESENT_HEADERS = ("x-callr-hmacsignature", "x-callr-eventid", "user-agent")


@dataclass
class ResendSummary:
    """Answers by status class, and by the `result` a receiver like this one gives."""

    sent: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)
    stopped: bool = False

    @property
    def not_taken(self) -> int:
        """Events that got no answer or a 5xx: the other receiver did not store them."""
        return sum(
            n for name, n in self.classes.items() if name == "5xx" or name.startswith("error")
        )

    def line(self) -> str:
        classes = ", ".join(f"{n} {name}" for name, n in sorted(self.classes.items()))
        text = f"sent {self.sent} events: {classes or 'none'}"
        if self.results:
            text += " (" + ", ".join(f"{n} {r}" for r, n in sorted(self.results.items())) + ")"
        if self.stopped:
            text += "; stopped early"
        return text


async def resend(
    pool: Pool,
    selection: EventFilter,
    url: str,
    *,
    concurrency: int = 8,
    rate: float | None = None,
    advance: Callable[[int], None] = lambda n: None,
    stop: asyncio.Event | None = None,
    page_size: int = 500,
) -> ResendSummary:
    """POST every selected event to `url`, at most `concurrency` at once and `rate` per second."""
    summary = ResendSummary()
    slots = asyncio.Semaphore(concurrency)
    interval = 1.0 / rate if rate else 0.0
    next_start = time.monotonic()
    after: tuple[Any, Any] = (None, None)
    tasks: set[asyncio.Task[None]] = set()

    def finished(done: asyncio.Task[None]) -> None:
        tasks.discard(done)
        slots.release()

    async with httpx.AsyncClient(timeout=30) as client:
        while not (stop is not None and stop.is_set()):
            async with pool.acquire() as conn:
                rows = await conn.fetch(_PAGE, *selection.arguments(), *after, page_size)
            if not rows:
                break
            for row in rows:
                if stop is not None and stop.is_set():
                    break
                if interval:
                    next_start = max(next_start + interval, time.monotonic())
                    await asyncio.sleep(max(0.0, next_start - time.monotonic()))
                await slots.acquire()
                task = asyncio.create_task(_send(client, url, row, summary, advance))
                tasks.add(task)
                task.add_done_callback(finished)
            after = (rows[-1]["received_at"], rows[-1]["event_id"])
        await asyncio.gather(*tasks)
    summary.stopped = stop is not None and stop.is_set()
    return summary


async def _send(
    client: httpx.AsyncClient,
    url: str,
    row: Record,
    summary: ResendSummary,
    advance: Callable[[int], None],
) -> None:
    kept = orjson.loads(row["headers"]) if row["headers"] else {}
    headers = {"content-type": "application/json"}
    headers.update({name: kept[name] for name in _RESENT_HEADERS if name in kept})
    try:
        response = await client.post(url, content=row["body"], headers=headers)
    except httpx.HTTPError as error:
        summary.classes[f"error ({type(error).__name__})"] += 1
    else:
        summary.classes[f"{response.status_code // 100}xx"] += 1
        result = _result(response)
        if result:
            summary.results[result] += 1
    summary.sent += 1
    advance(1)


def _result(response: httpx.Response) -> str | None:
    try:
        document = response.json()
    except ValueError:
        return None
    value = document.get("result") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None
