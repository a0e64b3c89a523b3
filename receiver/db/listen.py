"""Wake-ups by LISTEN/NOTIFY: a hint that there is work, never the work itself.

Whoever listens also polls: a notification sent while the connection was away is
not delivered again, so the callback is called once more on every (re)connect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import structlog

from receiver.retry import Backoff, Failures

log = structlog.get_logger("receiver.listen")

# 0.5 s after a connection ended, doubled at each failure to connect up to 10 s.
RECONNECT_BACKOFF = Backoff(first=0.5, cap=10.0)


async def listen(dsn: str, channel: str, wake: Callable[[], None]) -> None:
    """Call `wake` on every NOTIFY on `channel` until cancelled; reconnect after errors."""
    failures = Failures("receiver.listen", backoff=RECONNECT_BACKOFF)
    while True:
        try:
            await _listen_once(dsn, channel, wake, failures)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            failures.add("listen_failed", error, channel=channel)
        await asyncio.sleep(failures.pause() if failures.count else RECONNECT_BACKOFF.delay(1))


async def _listen_once(
    dsn: str, channel: str, wake: Callable[[], None], failures: Failures
) -> None:
    lost = asyncio.Event()
    conn = await asyncpg.connect(dsn)
    try:
        conn.add_termination_listener(lambda _: lost.set())
        await conn.add_listener(channel, lambda *_: wake())
        failures.clear("listen_resumed")
        wake()  # catch up on what was notified while away
        await lost.wait()
    finally:
        # No goodbye to the server: a graceful close can wait on it, and this
        # connection only ever listened.
        conn.terminate()
