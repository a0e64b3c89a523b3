"""How long to wait before trying again: one value for every retry of the receiver.

Forwards to handlers, sends to CALLR, calls to CALLR's API, the projector after a
failed batch and LISTEN after a lost connection each name a `Backoff`; none computes
its own waits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

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
