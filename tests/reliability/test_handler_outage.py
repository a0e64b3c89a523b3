"""Forwards outlive a handler that is down, then slow, then erratic: all delivered, in order."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from receiver.forwarding.handlers import NewHandler, add_handler
from receiver.simulate import Signer
from testkit.callr_events import mo_event
from tests.reliability.conftest import SECRET, OwnPostgres
from tests.test_cli import free_port

pytestmark = pytest.mark.reliability

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
ERROR = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
REFUSE = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
ENDLESS = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{"


@dataclass
class Seen:
    webhook_id: str
    event_id: str
    sender: str
    answer: str


@dataclass
class Handler:
    """A raw HTTP server whose behaviour the test changes: ok, slow, 500, reset, endless."""

    port: int
    mode: str = "ok"
    seen: list[Seen] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            path = lines[0].split()[1]
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            headers = {k.lower(): v for k, v in headers.items()}
            body = orjson.loads(await reader.readexactly(int(headers["content-length"])))
            mode = "refuse" if path == "/refuse" else self.mode
            if mode == "erratic":
                mode = ("500", "reset", "endless")[len(self.seen) % 3]
            self.seen.append(
                Seen(headers["webhook-id"], body["event_id"], body["mo"]["from"], mode)
            )
            if mode == "slow":
                await asyncio.sleep(1.5)
                writer.write(OK)
            elif mode == "500":
                writer.write(ERROR)
            elif mode == "refuse":
                writer.write(REFUSE)
            elif mode == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            elif mode == "endless":
                writer.write(ENDLESS)
                await writer.drain()
                await asyncio.sleep(30)
            else:
                writer.write(OK)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def register(database: str, **fields: Any) -> None:
    conn = await asyncpg.connect(database)
    try:
        await add_handler(conn, NewHandler(**{"default": False, **fields}))
    finally:
        await conn.close()


async def test_forwards_outlive_a_handler_down_slow_then_erratic(
    own_postgres: OwnPostgres, receiver_factory: Any
) -> None:
    handler = Handler(free_port())
    receiver = receiver_factory(
        own_postgres.url,
        RECEIVER_DISPATCHER="true",
        RECEIVER_FORWARD_BACKOFF_BASE="0.1",
        RECEIVER_FORWARD_MAX_ATTEMPTS="40",
        RECEIVER_DISPATCH_POLL_INTERVAL="0.2",
    )
    await asyncio.to_thread(receiver.start)
    await register(
        own_postgres.url, user_data="replies", url=f"http://127.0.0.1:{handler.port}/h", timeout=1.0
    )
    # A 400 is final for this handler (by default every answer but a 2xx is retried).
    await register(
        own_postgres.url,
        user_data="refused",
        url=f"http://127.0.0.1:{handler.port}/refuse",
        timeout=1.0,
        final_statuses=(400,),
    )

    # Five conversations of six replies each, sent while the handler is not there yet.
    signer = Signer(SECRET)
    sent: dict[str, list[str]] = defaultdict(list)
    async with httpx.AsyncClient(timeout=10) as client:

        async def post(body: bytes) -> None:
            response = await client.post(
                receiver.webhook, content=body, headers=signer.headers(body)
            )
            assert response.status_code == 200, response.text

        for n in range(6):
            for sender in range(5):
                event_id = f"c{sender}-{n}"
                sent[f"+3361000000{sender}"].append(event_id)
                await post(
                    mo_event(
                        event_id,
                        f"CONV{sender}{n:03d}",
                        sender=f"+3361000000{sender}",
                        user_data="replies",
                    )
                )

    phases = []
    started = time.monotonic()
    for mode, seconds in (("down", 3.0), ("slow", 2.5), ("erratic", 3.0), ("ok", 0.0)):
        phases.append((mode, round(time.monotonic() - started, 1)))
        if mode == "down":
            await handler.stop()
        else:
            handler.mode = mode
            if handler.server is None:
                await handler.start()
        await asyncio.sleep(seconds)

    # With the handler up, three replies it refuses with a 400, final for it: dead at the
    # first attempt.
    async with httpx.AsyncClient(timeout=10) as client:
        for n in range(3):
            body = mo_event(f"x-{n}", f"REFUSE{n:02d}", sender="+33619999999", user_data="refused")
            answer = await client.post(receiver.webhook, content=body, headers=signer.headers(body))
            assert answer.status_code == 200, answer.text

    conn = await asyncpg.connect(own_postgres.url)
    try:
        deadline = time.monotonic() + 60
        while True:
            states = await conn.fetch("SELECT event_id, state, attempts FROM forwards")
            if all(r["state"] in ("done", "dead") for r in states):
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
        await handler.stop()

    by_event = {r["event_id"]: r for r in states}
    # Delivered, every one; dead only the ones the handler refused with a 400, at once.
    assert {e: r["state"] for e, r in by_event.items() if not e.startswith("x-")} == dict.fromkeys(
        (e for events in sent.values() for e in events), "done"
    )
    assert all(by_event[f"x-{n}"]["state"] == "dead" for n in range(3))
    assert all(by_event[f"x-{n}"]["attempts"] == 1 for n in range(3))
    # Every repeat of a forward carries its webhook-id, and never more than attempted.
    copies: dict[str, list[Seen]] = defaultdict(list)
    for seen in handler.seen:
        copies[seen.event_id].append(seen)
    for event_id, repeats in copies.items():
        assert {s.webhook_id for s in repeats} == {repeats[0].webhook_id}
        assert len(repeats) <= by_event[event_id]["attempts"]
    # The outage was felt: repeats happened.
    assert any(len(repeats) > 1 for repeats in copies.values())
    # Each conversation reached the handler in the order it was sent.
    for number, events in sent.items():
        first_seen = list(dict.fromkeys(s.event_id for s in handler.seen if s.sender == number))
        assert first_seen == events, number
    answers: dict[str, int] = defaultdict(int)
    for each in handler.seen:
        answers[each.answer] += 1
    print(f"handler outage: phases {phases}, handler saw {dict(answers)}")
