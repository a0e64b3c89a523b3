"""The loop the projector, the dispatcher and the sender share."""

from __future__ import annotations

import asyncio

from receiver.db.loop import Next, WorkLoop


async def test_a_wake_up_during_a_turn_brings_the_next_turn_at_once() -> None:
    loop = WorkLoop("test", None, "unused", poll_interval=60)
    turns = 0

    async def turn() -> Next:
        nonlocal turns
        turns += 1
        if turns == 1:
            loop.wake()  # as a NOTIFY arriving while the first turn works
        return None

    runner = asyncio.create_task(loop.run(turn))
    await asyncio.sleep(0.1)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    # The second turn came without waiting the 60 s poll; nothing woke a third.
    assert turns == 2


async def test_zero_means_another_turn_at_once_and_none_a_wait() -> None:
    loop = WorkLoop("test", None, "unused", poll_interval=60)
    asked: list[Next] = [0, 0, None]
    turns = 0

    async def turn() -> Next:
        nonlocal turns
        turns += 1
        return asked.pop(0) if asked else None

    runner = asyncio.create_task(loop.run(turn))
    await asyncio.sleep(0.5)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    # Two turns asked for another at once; the third waits (a minute) for a wake-up.
    assert turns == 3


async def test_the_poll_interval_ends_a_wait_nobody_woke() -> None:
    loop = WorkLoop("test", None, "unused", poll_interval=0.05)
    turns = 0

    async def turn() -> Next:
        nonlocal turns
        turns += 1
        return None

    runner = asyncio.create_task(loop.run(turn))
    await asyncio.sleep(1.0)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    # About 20; at least a few however slow the machine, never one per loop iteration.
    assert 3 <= turns <= 21


async def test_cancelling_the_loop_cancels_what_its_turns_started() -> None:
    loop = WorkLoop("test", None, "unused", poll_interval=60)
    cancelled = asyncio.Event()
    ended: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.set()

    async def turn() -> Next:
        if not loop.running:
            loop.start(forever(), name="work", done=lambda task: ended.append(task.get_name()))
        return None

    runner = asyncio.create_task(loop.run(turn))
    await asyncio.sleep(0.05)
    assert len(loop.running) == 1
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert cancelled.is_set()
    assert ended == ["work"]
    assert not loop.running
