"""The least a receiver that stores before it answers can do: the floor of the benchmark.

Starlette and asyncpg; each request's event id (`event_id` in v1, `id` in v2) and
raw body go to one writer task, which inserts whatever has queued up into one
table with a primary key (`ON CONFLICT DO NOTHING`) in one transaction, commits
(fsync on), and only then answers those requests. No signature, no validation,
no log line, no metrics: what any durable receiver pays on this machine, to
compare the receiver with. Run by `bench/throughput.py`; never a service.

    RECEIVER_DATABASE_URL=postgresql://... uvicorn minimal_durable:app --workers N
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_TABLE = """
CREATE TABLE IF NOT EXISTS minimal_events (event_id text PRIMARY KEY, body bytea NOT NULL)
"""
_INSERT = """
INSERT INTO minimal_events (event_id, body)
SELECT * FROM unnest($1::text[], $2::bytea[])
ON CONFLICT DO NOTHING
"""
_BATCH_MAX = 500


class Writer:
    """One task: take what has queued, insert it in one transaction, answer after COMMIT."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.queue: asyncio.Queue[tuple[str, bytes, asyncio.Future[None]]] = asyncio.Queue()

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < _BATCH_MAX and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await conn.execute(_INSERT, [b[0] for b in batch], [b[1] for b in batch])
            except Exception as error:
                for _, _, future in batch:
                    future.set_exception(error)
                continue
            for _, _, future in batch:
                future.set_result(None)


def _event_id(body: bytes) -> str:
    document = orjson.loads(body)
    return str(document.get("event_id") or document.get("id"))


async def receive(request: Request) -> Response:
    body = await request.body()
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    request.state.writer.queue.put_nowait((_event_id(body), body, future))
    await future
    return Response(b'{"result":"stored"}', media_type="application/json")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    pool = await asyncpg.create_pool(os.environ["RECEIVER_DATABASE_URL"], min_size=1, max_size=2)
    async with pool.acquire() as conn:
        await conn.execute(_TABLE)
    writer = Writer(pool)
    task = asyncio.create_task(writer.run())
    try:
        yield {"writer": writer}
    finally:
        task.cancel()
        await pool.close()


app = Starlette(routes=[Route("/webhooks/callr", receive, methods=["POST"])], lifespan=lifespan)
