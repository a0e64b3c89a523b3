"""`/healthz`: the process answers. `/readyz`: the database answers and its schema is current."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
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
    """Readiness against the schema revision this code was written for."""

    head: str
    timeout: float = 2.0

    async def readyz(self, request: Request) -> Response:
        """200 when the database answers at the expected schema revision, 503 otherwise."""
        try:
            async with asyncio.timeout(self.timeout), request.state.pool.acquire() as conn:
                revision = await conn.fetchval("SELECT version_num FROM alembic_version")
        except asyncpg.exceptions.UndefinedTableError:
            return _unready("the database has no schema: run `receiver migrate`")
        except UNAVAILABLE_ERRORS:
            return _unready("the database is unavailable")
        if revision != self.head:
            if not migrate.known(revision):
                return _unready(
                    f"the schema is at revision {revision}, which this code ({self.head}) does"
                    " not know: a newer release migrated it"
                )
            return _unready(
                f"the schema is at revision {revision}, this code expects {self.head}: "
                "run `receiver migrate`"
            )
        return JSONResponse({"status": "ready", "schema": revision})


def _unready(reason: str) -> Response:
    return JSONResponse({"status": "unready", "reason": reason}, status_code=503)
