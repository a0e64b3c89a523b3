"""uvicorn's HTTP protocol, with each turn's writes sent together and limits for direct exposure.

uvicorn writes a response's status line and headers, then its body, each as soon
as the application sends it: two system calls per response, which under wrk were
9% of the worker's samples (py-spy). Here a connection's writes wait for the end
of the loop's turn and go out as one.

And the limits that uvicorn alone does not set, so that idle or slow connections
cannot take every file descriptor (20,000 idle connections did, when uvicorn was
reached without the proxy in front):
- a connection that sends nothing is closed after the keep-alive timeout, like an
  idle one between requests (uvicorn waits for ever for the first request);
- a request's headers must arrive within `HEADERS_TIMEOUT` of its first byte;
- past `limit_concurrency` open connections (`receiver serve --max-connections`),
  a new one is closed at once, its descriptor freed (uvicorn would keep it open to
  answer 503).
The proxies of deploy/ set their own, tighter limits: always run behind one.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADERS_TIMEOUT = 10.0
"""Seconds from a request's first byte to the end of its headers."""


class CoalescedWrites:
    """A transport whose writes in one turn of the loop go out in one call of the real one."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes | bytearray | memoryview] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Hand what was written to the real transport (the end of the turn does it too)."""
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._pending)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # Everything else (reading, extra info, buffer limits, is_closing) as it is.
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a transport that coalesces each turn's writes, with
    deadlines for idle connections and headers, and a ceiling on connections."""

    _headers_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.writes = CoalescedWrites(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, self.writes))
        ceiling = self.limit_concurrency
        if ceiling is not None and len(self.connections) > ceiling:
            self.writes.abort()
            return
        # Until its first request, a connection is idle: the keep-alive timeout holds.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_deadline = self.loop.call_later(HEADERS_TIMEOUT, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        self._cancel_headers_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_headers_deadline()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._headers_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_headers_deadline(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
            self._headers_deadline = None

    def eof_received(self) -> None:
        # The client has sent all it will, and the real transport closes itself when
        # this returns: what was written for it goes first.
        self.writes.flush()
        super().eof_received()
