"""Trying again: how long to wait (one value for every retry of the receiver), and how a
batch that one item made fail gets the others through.

Forwards to handlers, sends to CALLR, calls to CALLR's API, the projector after a
failed batch and LISTEN after a lost connection each name a `Backoff`; none computes
its own waits.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

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
