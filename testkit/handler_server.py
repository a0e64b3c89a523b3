"""A real HTTP handler on loopback that records what it receives and answers as scripted;
forwards queued in bulk for it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import uvicorn

# (status, seconds to wait before answering) for the n-th request (0-based) to a path.
Script = Callable[[int], tuple[int, float]]


def always(status: int) -> Script:
    return lambda n: (status, 0.0)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class HandlerServer:
    """Records every request; `scripts` decides each path's answers (200 by default)."""

    scripts: dict[str, Script] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    """The most requests it ever had in hand at once."""
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        count = len(self.on(path))
        self.received.append(
            Received(
                path=path,
                headers={k.decode(): v.decode() for k, v in scope["headers"]},
                body=body,
                at=time.monotonic(),
            )
        )
        status, delay = self.scripts.get(path, always(200))(count)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(delay)
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b'{"ok": true}'})
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        self._server, self._task, self.port = serve_on_loopback(self, self.port)

    async def stop(self) -> None:
        await stop_serving(self._server, self._task)
        self._server, self._task = None, None


def serve_on_loopback(app: Any, port: int = 0) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """`app` under uvicorn on 127.0.0.1 (`port`, or a free one): the server, its task, the port."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    # Listening now means connections wait in the backlog until uvicorn serves them.
    sock.listen(128)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    return server, asyncio.create_task(server.serve(sockets=[sock])), sock.getsockname()[1]


async def stop_serving(server: uvicorn.Server | None, task: asyncio.Task[None] | None) -> None:
    if server is not None and task is not None:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def handler_server() -> AsyncIterator[HandlerServer]:
    server = HandlerServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def wait_for(condition: Callable[[], bool], *, seconds: float = 10.0) -> None:
    """Wait until `condition()` holds; fail the test if it does not within `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        await asyncio.sleep(0.02)


async def queue_status_callbacks(database: str, handler_id: int, count: int) -> None:
    """`count` pending status callbacks for `handler_id`, each of its own SMS."""
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(
            "INSERT INTO events (event_id, received_at, state, fingerprint, body)"
            " VALUES ('bulk', now(), 'processed', '\\x00', '{}')"
        )
        await conn.execute(
            """
            INSERT INTO messages (sms_id, direction, user_data, status, provider_status,
                status_at, status_rank, status_terminal, first_seen_at, last_seen_at)
            SELECT 'bulk' || g, 'outbound', '42', 'sent', 'SENT', now(), 3, false, now(), now()
            FROM generate_series(1, $1) g
            """,
            count,
        )
        await conn.execute(
            """
            INSERT INTO forwards (kind, event_id, sms_id, handler_id, rule, user_data,
                conversation, state, next_attempt_at, created_at, status_before, status_after,
                status_at, status_rank, status_terminal)
            SELECT 'status', 'bulk', 'bulk' || g, $2, 'user_data', '42',
                $3 || ':sms:bulk' || g, 'pending', now(), now(), 'pending', 'sent',
                now(), 3, false
            FROM generate_series(1, $1) g
            """,
            count,
            handler_id,
            str(handler_id),
        )
    finally:
        await conn.close()
