"""Senders' claims: beside the projected sends, one sender each, over when a step moves on.

Real PostgreSQL, the claim statements the senders run, sends queued through the API
with no sender running.
"""

from __future__ import annotations

import asyncio

import asyncpg

from receiver.app import create_app
from receiver.sending.lookup import LATER
from receiver.sending.sender import CLAIM
from testkit.fake_callr import FakeCallr
from testkit.support import fetch, running
from tests.conftest import SettingsFactory
from tests.sending.test_sending import QUICK, TO, post

_SENDS = "SELECT * FROM sends ORDER BY id"


async def _queued(make_settings: SettingsFactory, callr: FakeCallr, count: int) -> str:
    """A database holding `count` queued sends, and no sender at work on them."""
    settings = make_settings(**QUICK, **callr.settings(), sender=False)
    async with running(create_app(settings)) as client:
        for n in range(count):
            answer = await post(client, {"to": TO, "text": f"n{n}"})
            assert answer.status_code == 202, answer.text
    assert settings.database_url is not None
    return settings.database_url


async def _claim(url: str, room: int, lease: float = 60.0) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        return {row["id"] for row in await conn.fetch(CLAIM, room, lease)}
    finally:
        await conn.close()


async def test_two_senders_never_claim_one_send_and_the_sends_are_left_as_their_steps_wrote(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    url = await _queued(make_settings, callr, 12)
    before = await fetch(url, _SENDS)
    claimed: list[set[str]] = []
    for _ in range(4):  # each round, two senders at once with room for 2 to 5 sends
        claimed += await asyncio.gather(_claim(url, 2), _claim(url, 5))
    every = [send_id for sends in claimed for send_id in sends]
    assert len(every) == len(set(every)) == 12
    assert await _claim(url, 100) == set()  # all held
    # Claims are not the sends': a rebuild has nothing of them to carry over.
    assert await fetch(url, _SENDS) == before


async def test_a_claim_ends_when_its_lease_does_or_when_the_send_moves_on(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    url = await _queued(make_settings, callr, 2)
    first, second = sorted(await _claim(url, 2, lease=0.3))
    assert await _claim(url, 2) == set()
    await asyncio.sleep(0.4)
    assert await _claim(url, 2, lease=60.0) == {first, second}  # the leases ran out
    # A step written (here: the seq moved on, as a step does) frees the send at once.
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE sends SET seq = seq + 1 WHERE id = $1", first)
        assert {row["id"] for row in await conn.fetch(CLAIM, 2, 60.0)} == {first}
        # A look-up put off holds the send until then, on its step only.
        seq = await conn.fetchval("SELECT seq FROM sends WHERE id = $1", second)
        await conn.execute(
            LATER, second, await conn.fetchval("SELECT now() + interval '1 hour'"), seq
        )
        await conn.execute("DELETE FROM send_claims WHERE send_id = $1", first)
        assert {row["id"] for row in await conn.fetch(CLAIM, 2, 60.0)} == {first}
        await conn.execute("UPDATE sends SET seq = seq + 1 WHERE id = $1", second)
        assert {row["id"] for row in await conn.fetch(CLAIM, 2, 60.0)} == {second}
    finally:
        await conn.close()
