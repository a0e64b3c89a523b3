"""What a forward sends and how: the JSON a handler receives (a reply, a status
callback) and the POST that carries it, bounded in time, with what came back."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx
import orjson

from receiver.db.engine import Record
from receiver.forwarding.policy import RetryPolicy
from receiver.http import whole_number

EXCERPT_BYTES = 1024


DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Claim:
    forward_id: int
    kind: str
    handler_id: int
    attempt: int
    url: str
    secret: str | None
    timeout: float
    previous_secret: str | None = None
    """The secret before a rotation, still in its overlap: it signs too."""
    policy: RetryPolicy = DEFAULT_POLICY
    rate: float | None = None
    failing: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None
    excerpt: str | None
    error: str | None
    retry_after: float | None
    duration_ms: float


async def post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], *, within: float
) -> Answer:
    """POST to a handler within `within` seconds in all (connect, send, read the excerpt)."""
    started = time.perf_counter()
    request_headers = {**headers, "content-type": "application/json"}
    try:
        async with asyncio.timeout(within):
            async with client.stream(
                "POST", url, content=body, headers=request_headers
            ) as response:
                excerpt = bytearray()
                async for chunk in response.aiter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT_BYTES:
                        break
                return Answer(
                    status=response.status_code,
                    excerpt=bytes(excerpt[:EXCERPT_BYTES]).decode("utf-8", "replace"),
                    error=None,
                    retry_after=_retry_after(response.headers.get("retry-after")),
                    duration_ms=_since(started),
                )
    except TimeoutError:
        error = f"no complete answer within {within:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    return Answer(
        status=None, excerpt=None, error=error, retry_after=None, duration_ms=_since(started)
    )


def reply_payload(row: Record) -> bytes:
    mt = None
    if row["mt_id"] is not None:
        mt = {"id": row["mt_id"], "user_data": row["mt_user_data"], "sent_at": row["mt_sent_at"]}
    return orjson.dumps(
        {
            "event_id": row["event_id"],
            "event_type": row["type"],
            "received_at": row["received_at"],
            "rule": row["rule"],
            "user_data": row["user_data"],
            "mo": {
                "id": row["sms_id"],
                "from": row["from_number"],
                "to": row["to_number"],
                "text": row["text"],
                "received_at": row["created_at"],
                "encoding": row["encoding"],
                "parts": row["parts"],
            },
            "mt": mt,
            # The event as CALLR sent it, byte for byte.
            "event": orjson.Fragment(row["body"]),
        }
    )


def status_payload(row: Record) -> bytes:
    """A status callback: the change, and the SMS as the API shows it, its history included."""
    return orjson.dumps(
        {
            "type": "sms.status",
            "callback_id": f"status_{row['id']}",
            "user_data": row["routed_by"],
            "change": {
                "before": row["status_before"],
                "after": row["status_after"],
                "at": row["status_at"],
            },
            "sms": {
                "id": row["sms_id"],
                "to": row["to_number"],
                "from": row["from_number"],
                "user_data": row["user_data"],
                "status": row["status"],
                "provider_status": row["provider_status"],
                "status_at": row["current_at"],
                "error": row["error"],
                "parts": row["parts"],
                "cost": None if row["cost"] is None else str(row["cost"]),
                "cost_cents": None if row["cost_cents"] is None else str(row["cost_cents"]),
                "network": row["network"],
                "history": orjson.Fragment(row["history"]),
            },
        }
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    seconds = whole_number(value.strip())
    if seconds is not None:
        return float(seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(when.tzinfo)).total_seconds(), 0.0)


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
