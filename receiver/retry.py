"""Trying again: how long to wait (one value for every retry of the receiver), how a
batch that one item made fail gets the others through, and how failures in a row are
said (once a minute, and once more when they end).

Forwards to handlers, sends to CALLR, calls to CALLR's API, the projector after a
failed batch and LISTEN after a lost connection each name a `Backoff`; none computes
its own waits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import structlog

T = TypeVar("T")
R = TypeVar("R")

# 2 ** 60 times any first wait is past every cap: a larger exponent changes nothing.
_MAX_DOUBLINGS = 60


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits that double from `first` up to `cap`, each scaled by a random factor in
    [1 - jitter, 1 + jitter] so that many waiting at once do not try again at once."""

    first: float
    """Seconds before the second try."""
    cap: float
    jitter: float = 0.25

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after try number `attempt` (1-based) failed."""
        doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
        wait = min(self.first * 2.0**doublings, self.cap)
        if self.jitter:
            wait *= (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return wait


async def isolating(
    items: Sequence[T],
    attempt: Callable[[Sequence[T]], Awaitable[R]],
    *,
    its_fault: Callable[[Exception], bool],
    alone: Callable[[T, Exception], Awaitable[R]],
    join: Callable[[R, R], R],
) -> R:
    """`attempt(items)`; when it fails by an item's fault (`its_fault`), the first half
    and then the second the same way, down to the item alone, which `alone` handles.
    The others go through, in their order; any other failure is raised.

    The webhook's writer keeps such an event as invalid; the projection parks it."""
    try:
        return await attempt(items)
    except Exception as error:
        if not its_fault(error):
            raise
        if len(items) == 1:
            return await alone(items[0], error)
        halves = (items[: len(items) // 2], items[len(items) // 2 :])
        first, second = [
            await isolating(half, attempt, its_fault=its_fault, alone=alone, join=join)
            for half in halves
        ]
        return join(first, second)


class Failures:
    """Failures in a row of one path (a loop, the webhook's writer): the first said at
    once, the next at most once every `every` seconds with how many came between (an
    outage is a line a minute, not one a request or a traceback a second), and a line
    when one succeeds again; with a `backoff`, the pause before the next try."""

    def __init__(self, logger: str, *, backoff: Backoff | None = None, every: float = 60.0) -> None:
        self._log = structlog.get_logger(logger)
        self._backoff = backoff
        self._every = every
        self.count = 0
        self._unsaid = 0
        self._said_at = -every

    def add(
        self, event: str, error: BaseException, *, traceback: bool = False, **fields: object
    ) -> None:
        self.count += 1
        self._unsaid += 1
        now = time.monotonic()
        if now - self._said_at < self._every:
            return
        said = {"error": repr(error), "failures": self._unsaid, **fields}
        if self._backoff is not None:
            said["retry_in"] = self.pause()
        if traceback:
            self._log.error(event, exc_info=error, **said)
        else:
            self._log.warning(event, **said)
        self._said_at, self._unsaid = now, 0

    def pause(self) -> float:
        assert self._backoff is not None, "no backoff given"
        return self._backoff.delay(self.count)

    def clear(self, event: str) -> None:
        """A success: said (`event`, with how many failures it ends) after failures."""
        if not self.count:
            return  # the usual case, on every batch of the answer path: nothing to do
        self._log.info(event, failures=self.count)
        self.count = self._unsaid = 0
        self._said_at = -self._every
