"""uvicorn's HTTP protocol, with the writes of one turn of the event loop sent together.

uvicorn writes a response's status line and headers, then its body, each as soon
as the application sends it: two system calls per response, which under wrk were
9% of the worker's samples (py-spy). Here a connection's writes wait for the end
of the loop's turn and go out as one. Nothing else of the protocol changes.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
    """uvicorn's httptools protocol on a transport that coalesces each turn's writes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.writes = CoalescedWrites(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, self.writes))

    def eof_received(self) -> None:
        # The client has sent all it will, and the real transport closes itself when
        # this returns: what was written for it goes first.
        self.writes.flush()
        super().eof_received()
