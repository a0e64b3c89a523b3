"""The loop every worker of the receiver runs (the projector, the forward dispatcher,
the sender): a turn of work, then a wait for a wake-up or the poll interval, until
cancelled.

A wake-up is a NOTIFY on the worker's channel (another process committed work, see
listen.py), or `wake()` from this process; the poll interval bounds the wait in any
case. On the way out the listener and the tasks the turns started are cancelled and
awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from receiver.db.listen import listen

# What a turn asks for next: None, wait for a wake-up (at most the poll interval);
# 0, another turn at once; a number of seconds, a pause first (after a failure).
Next = float | None


class WorkLoop:
    """A worker's wake-ups, the tasks it started, and its loop."""

    def __init__(self, name: str, dsn: str | None, channel: str, poll_interval: float) -> None:
        """`dsn`: where to LISTEN on `channel` (None: poll only)."""
        self._name = name
        self._dsn = dsn
        self._channel = channel
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self.running: set[asyncio.Task[Any]] = set()
        """The tasks started by `start` that have not ended."""

    def wake(self) -> None:
        """There is work: end the current wait, or skip the next."""
        self._wake.set()

    def start(
        self,
        work: Coroutine[Any, Any, None],
        name: str,
        done: Callable[[asyncio.Task[None]], None] | None = None,
    ) -> asyncio.Task[None]:
        """`work` as a task of the loop's: cancelled with it; when it ends, `done` is
        called and the loop wakes (what it freed may be taken now)."""
        task = asyncio.create_task(work, name=name)
        self.running.add(task)

        def ended(task: asyncio.Task[None]) -> None:
            self.running.discard(task)
            if done is not None:
                done(task)
            self._wake.set()

        task.add_done_callback(ended)
        return task

    async def run(self, turn: Callable[[], Awaitable[Next]]) -> None:
        """Turns until cancelled, each followed by what it asks for (`Next`)."""
        listener = (
            asyncio.create_task(
                listen(self._dsn, self._channel, self.wake), name=f"{self._name}-listen"
            )
            if self._dsn
            else None
        )
        try:
            while True:
                # Cleared before the turn: a wake-up during it is not lost.
                self._wake.clear()
                after = await turn()
                if after is None:
                    await self._wait()
                elif after > 0:
                    await asyncio.sleep(after)
        finally:
            tasks = [*self.running, *([listener] if listener else [])]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _wait(self) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
        # cancellation of a shutdown that lands as the wait ends.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._poll_interval):
                await self._wake.wait()
