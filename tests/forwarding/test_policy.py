from __future__ import annotations

import random

import pytest

from receiver.forwarding.policy import RetryPolicy, Verdict
from receiver.retry import Backoff

POLICY = RetryPolicy(max_attempts=12, backoff=Backoff(first=40.0, cap=12 * 3600.0, jitter=0.2))


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_a_2xx_is_done(status: int) -> None:
    assert POLICY.decide(attempt=1, status=status).verdict is Verdict.DONE


# Every status but a 2xx and 410, swept: a deploy's 404 or 401 kills nothing.
@pytest.mark.parametrize("status", [None, *range(300, 410), *range(411, 600)])
def test_every_answer_but_a_2xx_and_410_is_retried(status: int | None) -> None:
    decision = POLICY.decide(attempt=1, status=status)
    assert decision.verdict is Verdict.RETRY
    if status is not None:
        assert decision.reason == f"the handler answered {status}"


STEADY = Backoff(first=40.0, cap=12 * 3600.0, jitter=0.0)


def test_410_gone_disables_the_handler_and_keeps_the_forward() -> None:
    decision = POLICY.decide(attempt=1, status=410)
    assert (decision.verdict, decision.reason) == (Verdict.GONE, "the handler answered 410 Gone")


@pytest.mark.parametrize("status", [400, 410, 422, 500])
def test_a_handler_s_final_statuses_end_a_forward_at_once(status: int) -> None:
    policy = POLICY.for_handler(
        attempts=None, first_retry=None, final_statuses=(400, 410, 422, 500)
    )
    decision = policy.decide(attempt=1, status=status)
    assert decision.verdict is Verdict.DEAD
    assert decision.reason == f"the handler answered {status}, final for this handler"
    assert policy.decide(attempt=1, status=404).verdict is Verdict.RETRY


def test_a_handler_s_schedule_replaces_the_default() -> None:
    policy = RetryPolicy(backoff=STEADY).for_handler(attempts=3, first_retry=5.0, final_statuses=())
    assert [policy.decide(attempt=n, status=500).delay for n in (1, 2)] == [5.0, 10.0]
    assert policy.decide(attempt=3, status=500).verdict is Verdict.DEAD
    same = RetryPolicy(backoff=STEADY).for_handler(
        attempts=None, first_retry=None, final_statuses=()
    )
    assert same == RetryPolicy(backoff=STEADY)


def test_the_last_attempt_is_dead() -> None:
    decision = POLICY.decide(attempt=12, status=503)
    assert decision.verdict is Verdict.DEAD
    assert decision.reason == "no success after 12 attempts"


def test_waits_double_within_the_jitter() -> None:
    rng = random.Random(7)
    for attempt in range(1, 8):
        delay = POLICY.decide(attempt=attempt, status=500, rng=rng).delay
        nominal = 40.0 * 2 ** (attempt - 1)
        assert 0.8 * nominal <= delay <= 1.2 * nominal


def test_the_defaults_spread_twelve_attempts_over_about_a_day() -> None:
    policy = RetryPolicy(backoff=STEADY)
    total = sum(policy.decide(attempt=n, status=500).delay for n in range(1, 12))
    assert 20 * 3600 <= total <= 26 * 3600


def test_retry_after_is_honoured_but_capped() -> None:
    policy = RetryPolicy(backoff=STEADY)
    assert policy.decide(attempt=1, status=429, retry_after=900).delay == 900
    assert policy.decide(attempt=1, status=503, retry_after=1).delay == 40
    assert policy.decide(attempt=1, status=503, retry_after=10**9).delay == policy.backoff.cap
