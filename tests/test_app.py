"""The app's lifespan: an idle service stops at once when told to."""

from __future__ import annotations

import asyncio
import time

from asgi_lifespan import LifespanManager

from receiver.app import create_app
from tests.conftest import SettingsFactory


async def test_an_idle_service_stops_in_under_a_second(make_settings: SettingsFactory) -> None:
    # Short polls: the projector's and dispatcher's waits time out all the time, so a
    # shutdown often lands as one ends (where asyncio.wait_for lost the cancellation on
    # Python 3.11, and the shutdown then waited its whole 5 s for them).
    settings = make_settings(projector_poll_interval=0.01, dispatch_poll_interval=0.01)
    stops = []
    for _ in range(5):
        manager = LifespanManager(create_app(settings), startup_timeout=20, shutdown_timeout=20)
        await manager.__aenter__()
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await manager.__aexit__(None, None, None)
        stops.append(time.monotonic() - started)
    assert max(stops) < 1.0, stops
