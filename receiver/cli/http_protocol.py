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
- a request's headers must arrive within `HEADERS_TIMEOUT` of its first byte (the
  connections are looked at four times within it, at most once a second);
- past `limit_concurrency` open connections (`receiver serve --max-connections`),
  a new one is closed at once, its descriptor freed (uvicorn would keep it open to
  answer 503);
- a request answered before its body arrived whole (a 413) is closed lingering:
  half-closed, the rest read and dropped for `LINGER_SECONDS`, so that the client
  reads the answer instead of a reset.
The proxies of deploy/ set their own, tighter limits: always run behind one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADERS_TIMEOUT = 10.0
"""Seconds from a request's first byte to the end of its headers."""
LINGER_SECONDS = 2.0
"""How long a connection answered before its request's body arrived whole reads and
drops the rest before it closes (a 413 for a body past the limit)."""


class CoalescedWrites:
    """A transport whose writes in one turn of the loop go out in one call of the real one."""

    __slots__ = ("_ended", "_linger", "_loop", "_pending", "_transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        linger: Callable[[], bool] | None = None,
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes | bytearray | memoryview] = []
        self._linger = linger
        # Half-closed (write_eof): nothing more may be written.
        self._ended = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._ended:
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
        if pending and not self._ended and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._pending)

    def write_eof(self) -> None:
        self.flush()
        if not self._ended:
            self._ended = True
            self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        if self._linger is not None and self._linger():
            return
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

    # When the request whose headers are awaited began (the loop's clock); None between.
    _headers_since: float | None = None
    # Whether the request in hand has arrived whole, and whether the connection is
    # lingering: answered and half-closed, the rest of the request read and dropped.
    _request_whole = True
    _lingering = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.writes = CoalescedWrites(cast(asyncio.Transport, transport), self.loop, self.linger)
        super().connection_made(cast(asyncio.Transport, self.writes))
        ceiling = self.limit_concurrency
        if ceiling is not None and len(self.connections) > ceiling:
            self.writes.abort()
            return
        # Until its first request, a connection is idle: the keep-alive timeout holds.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
        _HeadersSweep.watch(self.server_state, self.loop)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_since = self.loop.time()
        self._request_whole = False

    def on_message_complete(self) -> None:
        self._request_whole = True
        super().on_message_complete()

    def linger(self) -> bool:
        """Close as a server must when it answered before the request's body was all sent
        (a 413): half-close, so that the answer reaches the client, and read and drop
        what it still sends for up to `LINGER_SECONDS`. Closing at once, with the body's
        bytes unread, resets the connection, and the client may never read the answer.
        False when there is nothing to wait for: the caller closes as usual."""
        if self._lingering:
            return True
        transport = self.writes._transport
        if self._request_whole or transport.is_closing() or not transport.can_write_eof():
            return False
        self._lingering = True
        self.writes.write_eof()
        transport.resume_reading()
        self.loop.call_later(LINGER_SECONDS, transport.close)
        return True

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a request that was answered already: dropped
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._headers_since = None
        super().on_headers_complete()

    def headers_overdue(self, now: float) -> bool:
        """Whether this connection's headers started longer than HEADERS_TIMEOUT ago."""
        since = self._headers_since
        return since is not None and now - since > HEADERS_TIMEOUT

    def eof_received(self) -> None:
        # The client has sent all it will, and the real transport closes itself when
        # this returns: what was written for it goes first.
        self.writes.flush()
        if self._lingering:
            return
        super().eof_received()


class _HeadersSweep:
    """Closes the connections whose headers are overdue, looking at all of them a few times
    within HEADERS_TIMEOUT, while the server has any.

    One timer for the server rather than one a request: arming and cancelling a timer for
    each request's headers was a thirtieth of the worker's time under load (py-spy).
    """

    def __init__(self, server_state: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._state = server_state
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def watch(cls, server_state: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Make sure the server's connections are swept (from each new connection)."""
        sweep = getattr(server_state, "receiver_headers_sweep", None)
        if sweep is None:
            sweep = cls(server_state, loop)
            server_state.receiver_headers_sweep = sweep
        if sweep._timer is None:
            sweep._schedule()

    def _schedule(self) -> None:
        self._timer = self._loop.call_later(min(1.0, HEADERS_TIMEOUT / 4), self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = self._loop.time()
        for protocol in list(self._state.connections):
            overdue = getattr(protocol, "headers_overdue", None)
            if overdue is not None and overdue(now) and not protocol.transport.is_closing():
                protocol.transport.close()
        if self._state.connections:
            self._schedule()
