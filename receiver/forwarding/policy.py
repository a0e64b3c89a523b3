"""When to try a forward again: a small immutable policy with one pure decision."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

# 408 Request Timeout and 429 Too Many Requests say "later", unlike other 4xx.
_RETRYABLE_4XX = frozenset({408, 429})


class Verdict(enum.StrEnum):
    """What happens to a forward after one attempt."""

    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    delay: float = 0.0
    """Seconds before the next attempt, for `RETRY`."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter. The defaults spread 12 attempts over about 24 hours."""

    max_attempts: int = 12
    base: float = 40.0
    """Seconds before the second attempt; each later wait doubles."""
    cap: float = 12 * 3600.0
    jitter: float = 0.2
    """Each wait is scaled by a random factor in [1 - jitter, 1 + jitter]."""

    def decide(
        self,
        *,
        attempt: int,
        status: int | None,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> Decision:
        """The verdict after attempt number `attempt` (1-based) answered `status`.

        `status` is None when there was no answer (timeout, connection error).
        """
        if status is not None and 200 <= status < 300:
            return Decision(Verdict.DONE)
        if status is not None and 400 <= status < 500 and status not in _RETRYABLE_4XX:
            return Decision(Verdict.DEAD, reason=f"the handler answered {status}")
        if attempt >= self.max_attempts:
            return Decision(Verdict.DEAD, reason=f"no success after {attempt} attempts")
        wait = min(self.base * 2 ** (attempt - 1), self.cap)
        wait *= (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return Decision(Verdict.RETRY, delay=wait)
