"""`GET /api/v1/status`: how fresh the message records are, and what is running."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version

from starlette.requests import Request
from starlette.responses import Response

from receiver.api.models import ServiceStatus, answer
from receiver.db.engine import Record
from receiver.db.migrate import read_schema
from receiver.forwarding.watch import silence, troubled_handlers
from receiver.projection.backlog import backlog


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _handler(row: Record) -> dict[str, object]:
    return {
        "id": row["id"],
        "user_data": row["user_data"],
        "default": row["default"],
        "failing_since": _iso(row["failing_since"]),
        "disabled_reason": row["disabled_reason"],
        "disabled_at": _iso(row["disabled_at"]),
        "waiting": row["waiting"],
    }


async def status(request: Request) -> Response:
    """The projection's backlog and whether it is stalled, the handlers failing or disabled,
    whether CALLR has gone silent, the schema revision (and whether this release runs on
    it) and this release."""
    settings = request.app.state.settings
    async with request.state.api_pool.acquire() as conn:
        behind = await backlog(conn)
        schema = await read_schema(conn)
        troubled = await troubled_handlers(conn)
        quiet = await silence(conn, settings.webhooks_silent_after)
    now = datetime.now(UTC)
    stalled_since = behind.stalled_since(request.app.state.settings.projection_stall_after, now=now)
    return answer(
        ServiceStatus,
        {
            "projection": {
                "pending": behind.pending,
                "lag_seconds": round(behind.lag_seconds(now), 3),
                "oldest_pending_received_at": _iso(behind.oldest_received_at),
                "last_batch_at": _iso(behind.last_batch_at),
                "stalled": stalled_since is not None,
                "stalled_since": _iso(stalled_since),
            },
            "handlers": {
                "failing": [_handler(h) for h in troubled if h["enabled"] and h["failing_since"]],
                "disabled": [_handler(h) for h in troubled if not h["enabled"]],
            },
            "webhooks": {
                "silent": quiet.silent,
                "silent_since": _iso(quiet.since),
                "last_report_at": _iso(quiet.last_report_at),
                "unreported_sends": quiet.unreported,
            },
            "read_replica": None
            if request.state.reads.state is None
            else request.state.reads.state.to_json(),
            "schema": schema.revision,
            "schema_head": schema.head,
            "schema_compatible": schema.compatible,
            "version": version("receiver"),
        },
    )
