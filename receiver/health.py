"""`/healthz`: the process answers. `/readyz`: the database answers, at a schema this code
runs on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from receiver.db import migrate
from receiver.db.engine import UNAVAILABLE_ERRORS
from receiver.http import JSONResponse


async def healthz(request: Request) -> Response:
    """Liveness: answers as long as the event loop runs."""
    return JSONResponse({"status": "ok"})


@dataclass(frozen=True, slots=True)
class Readiness:
    """Readiness: the database answers, at a schema this code runs on (its own head, or
    a newer one whose migrations recorded that this code runs on it)."""

    timeout: float = 2.0

    async def readyz(self, request: Request) -> Response:
        """200 when the database answers at a schema this code runs on, 503 otherwise."""
        try:
            async with asyncio.timeout(self.timeout), request.state.pool.acquire() as conn:
                schema = await migrate.read_schema(conn)
        except UNAVAILABLE_ERRORS:
            return _unready("the database is unavailable")
        problem = schema.problem()
        if problem is not None:
            return _unready(f"the database {problem}")
        return JSONResponse({"status": "ready", "schema": schema.revision, "head": schema.head})


def _unready(reason: str) -> Response:
    return JSONResponse({"status": "unready", "reason": reason}, status_code=503)
