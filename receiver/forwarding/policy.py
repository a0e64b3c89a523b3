"""When to try a forward again: a small immutable policy with one pure decision.

Every answer but a 2xx is tried again on the handler's schedule: a handler that
answers 404 or 401 while it is being deployed loses nothing. Two exceptions: **410
Gone** says "stop sending here" (Standard Webhooks), so the handler is disabled and
its forwards wait (`GONE`); and the statuses a handler names as final for it
(`final_statuses`, none by default) end the forward at once (`DEAD`).
"""

from __future__ import annotations

import dataclasses
import enum
import random
from collections.abc import Collection
from dataclasses import dataclass

from receiver.retry import Backoff

GONE_STATUS = 410


class Verdict(enum.StrEnum):
    """What happens to a forward after one attempt."""

    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"
    GONE = "gone"
    """The handler said 410: it is disabled, the forward waits for it."""


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    delay: float = 0.0
    """Seconds before the next attempt, for `RETRY`."""
    reason: str = ""


# 40 s before the second attempt, each later wait doubled up to 12 hours: 12 attempts
# spread over about 24 hours.
FORWARD_BACKOFF = Backoff(first=40.0, cap=12 * 3600.0, jitter=0.2)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts a forward gets and the waits between them."""

    max_attempts: int = 12
    backoff: Backoff = FORWARD_BACKOFF
    final_statuses: frozenset[int] = frozenset()
    """Answers that end a forward at once (the handler's own choice)."""

    def for_handler(
        self,
        *,
        attempts: int | None,
        first_retry: float | None,
        final_statuses: Collection[int],
    ) -> RetryPolicy:
        """This policy with what a handler sets of its own (None: this policy's)."""
        return dataclasses.replace(
            self,
            max_attempts=attempts or self.max_attempts,
            backoff=dataclasses.replace(self.backoff, first=first_retry or self.backoff.first),
            final_statuses=frozenset(final_statuses),
        )

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
        if status in self.final_statuses:
            return Decision(
                Verdict.DEAD, reason=f"the handler answered {status}, final for this handler"
            )
        if status == GONE_STATUS:
            return Decision(Verdict.GONE, reason="the handler answered 410 Gone")
        if attempt >= self.max_attempts:
            return Decision(Verdict.DEAD, reason=f"no success after {attempt} attempts")
        wait = self.backoff.delay(attempt, rng)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.backoff.cap))
        reason = f"the handler answered {status}" if status is not None else ""
        return Decision(Verdict.RETRY, delay=wait, reason=reason)
