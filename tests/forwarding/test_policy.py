from __future__ import annotations

import random

import pytest

from receiver.forwarding.policy import RetryPolicy, Verdict

POLICY = RetryPolicy(max_attempts=12, base=40.0, jitter=0.2)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_a_2xx_is_done(status: int) -> None:
    assert POLICY.decide(attempt=1, status=status).verdict is Verdict.DONE


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_a_4xx_is_dead_at_once(status: int) -> None:
    decision = POLICY.decide(attempt=1, status=status)
    assert decision.verdict is Verdict.DEAD
    assert decision.reason == f"the handler answered {status}"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, None])
def test_408_429_5xx_and_no_answer_are_retried(status: int | None) -> None:
    assert POLICY.decide(attempt=1, status=status).verdict is Verdict.RETRY


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
    policy = RetryPolicy(jitter=0.0)
    total = sum(policy.decide(attempt=n, status=500).delay for n in range(1, 12))
    assert 20 * 3600 <= total <= 26 * 3600


def test_retry_after_is_honoured_but_capped() -> None:
    policy = RetryPolicy(jitter=0.0)
    assert policy.decide(attempt=1, status=429, retry_after=900).delay == 900
    assert policy.decide(attempt=1, status=503, retry_after=1).delay == 40
    assert policy.decide(attempt=1, status=503, retry_after=10**9).delay == policy.cap
