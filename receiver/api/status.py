"""`GET /api/v1/status`: how fresh the message records are, and what is running."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version

from starlette.requests import Request
from starlette.responses import Response

from receiver.api.models import ServiceStatus, answer
from receiver.projection.backlog import backlog


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


async def status(request: Request) -> Response:
    """The projection's backlog and whether it is stalled, the schema revision and this release."""
    async with request.state.api_pool.acquire() as conn:
        behind = await backlog(conn)
        schema = await conn.fetchval("SELECT version_num FROM alembic_version")
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
            "schema": schema,
            "version": version("receiver"),
        },
    )
