"""`GET /api/v1/status`: how fresh the message records are, and what is running."""

from __future__ import annotations

from importlib.metadata import version

from starlette.requests import Request
from starlette.responses import Response

from receiver.http import JSONResponse
from receiver.projection.backlog import backlog


async def status(request: Request) -> Response:
    """The projection's backlog, the database's schema revision and this release."""
    async with request.state.api_pool.acquire() as conn:
        behind = await backlog(conn)
        schema = await conn.fetchval("SELECT version_num FROM alembic_version")
    oldest = behind.oldest_received_at
    return JSONResponse(
        {
            "projection": {
                "pending": behind.pending,
                "lag_seconds": round(behind.lag_seconds(), 3),
                "oldest_pending_received_at": oldest.isoformat() if oldest else None,
            },
            "schema": schema,
            "version": version("receiver"),
        }
    )
