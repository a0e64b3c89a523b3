"""What the tests of sending share: the CALLR double on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from testkit.fake_callr import FakeCallr, fake_callr


@pytest.fixture
async def callr() -> AsyncIterator[FakeCallr]:
    async with fake_callr() as server:
        yield server
