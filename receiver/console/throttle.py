"""Sign-in throttling: guessing a token costs a minute after a handful of tries.

Failed sign-ins are counted per client address and in all, over the last minute,
in this process. An address with `per_address` failures in the minute is answered
429 with `Retry-After` until the oldest of them is a minute old; past `overall`
failures in the minute from all addresses together, every sign-in waits the same
way (sessions already open are not touched). A correct token from an address that
has not failed keeps working while only other addresses are throttled.

In memory, per process: N processes behind one address let N times as many tries
through. It bounds guessing to a few tries a minute an address, not to a number
shared by the deployment.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable

WINDOW = 60.0


class SignInThrottle:
    """Counts failed sign-ins and says how long a client must wait before the next try."""

    def __init__(
        self,
        *,
        per_address: int = 5,
        overall: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_address = per_address
        self._overall = overall
        self._clock = clock
        self._by_address: defaultdict[str, deque[float]] = defaultdict(deque)
        self._all: deque[float] = deque()

    def retry_after(self, address: str) -> int | None:
        """Seconds `address` must wait before it may try again; None when it may now."""
        now = self._clock()
        waits = []
        failures = self._by_address.get(address)
        if failures is not None:
            _forget(failures, now)
            if not failures:
                del self._by_address[address]
            elif len(failures) >= self._per_address:
                waits.append(failures[-self._per_address] + WINDOW - now)
        _forget(self._all, now)
        if len(self._all) >= self._overall:
            waits.append(self._all[-self._overall] + WINDOW - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, address: str) -> None:
        now = self._clock()
        self._by_address[address].append(now)
        self._all.append(now)
        _forget(self._all, now)
        if len(self._by_address) > 4 * self._overall:
            # Addresses that failed once and never came back: forgotten in one sweep.
            for stale in [a for a, times in self._by_address.items() if times[-1] <= now - WINDOW]:
                del self._by_address[stale]


def _forget(times: deque[float], now: float) -> None:
    while times and times[0] <= now - WINDOW:
        times.popleft()
