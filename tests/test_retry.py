"""Every wait before a retry comes from one Backoff: doubling from its first wait up to
its cap, within its jitter, whatever the attempt."""

from __future__ import annotations

import operator
import random
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.callr.transport import API_BACKOFF
from receiver.db.listen import RECONNECT_BACKOFF
from receiver.forwarding.health import NOTICE_BACKOFF
from receiver.forwarding.policy import FORWARD_BACKOFF
from receiver.projection.projector import _FAILED_BATCH_BACKOFF
from receiver.retry import Backoff, isolating
from receiver.sending.sender import SEND_BACKOFF

EVERY_BACKOFF = {
    "forwards": FORWARD_BACKOFF,
    "sends": SEND_BACKOFF,
    "CALLR's API": API_BACKOFF,
    "the projector after a failed batch": _FAILED_BATCH_BACKOFF,
    "LISTEN's reconnects": RECONNECT_BACKOFF,
    "notices to a handler's owners": NOTICE_BACKOFF,
}


@pytest.mark.parametrize("backoff", EVERY_BACKOFF.values(), ids=EVERY_BACKOFF.keys())
@given(attempt=st.integers(min_value=-5, max_value=10**6), seed=st.integers())
def test_each_wait_is_the_doubled_first_wait_capped_within_the_jitter(
    backoff: Backoff, attempt: int, seed: int
) -> None:
    wait = backoff.delay(attempt, random.Random(seed))
    steady = min(backoff.first * 2.0 ** min(max(attempt - 1, 0), 60), backoff.cap)
    assert steady * (1 - backoff.jitter) <= wait <= steady * (1 + backoff.jitter)


def test_without_jitter_the_waits_double_up_to_the_cap() -> None:
    backoff = Backoff(first=0.5, cap=3.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.delay(10**9) == 3.0


def test_jittered_waits_spread_out() -> None:
    rng = random.Random(7)
    waits = {round(SEND_BACKOFF.delay(3, rng), 3) for _ in range(50)}
    assert len(waits) > 40


async def test_isolating_gets_every_item_but_the_faulty_one_through_in_order() -> None:
    attempts: list[list[int]] = []

    async def attempt(items: Sequence[int]) -> list[str]:
        attempts.append(list(items))
        if 5 in items:
            raise ValueError("5 is refused")
        return [f"ok {n}" for n in items]

    async def alone(item: int, error: Exception) -> list[str]:
        return [f"kept {item}: {error}"]

    done = await isolating(
        list(range(8)), attempt, its_fault=lambda e: True, alone=alone, join=operator.add
    )
    assert done == [*(f"ok {n}" for n in range(5)), "kept 5: 5 is refused", "ok 6", "ok 7"]
    # Halves down to the item: the whole, its halves, [4, 5] and its halves, then [6, 7].
    assert [len(a) for a in attempts] == [8, 4, 4, 2, 1, 1, 2]


async def test_isolating_raises_what_is_not_an_item_s_fault() -> None:
    async def attempt(items: Sequence[int]) -> list[int]:
        raise ConnectionError("the database went away")

    async def alone(item: int, error: Exception) -> list[int]:
        raise AssertionError("no item is to blame")

    with pytest.raises(ConnectionError):
        await isolating(
            [1, 2, 3],
            attempt,
            its_fault=lambda e: not isinstance(e, ConnectionError),
            alone=alone,
            join=operator.add,
        )
