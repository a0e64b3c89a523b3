"""Shared by the forwarding tests: a handler server on loopback, a receiver that retries fast."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from receiver.app import create_app
from receiver.forwarding.handlers import NewHandler, add_handler
from testkit.handler_server import HandlerServer, handler_server
from testkit.support import running
from tests.conftest import SettingsFactory

# Retries a few tens of milliseconds apart, and a dispatcher that looks often.
FAST = {"forward_backoff_base": 0.05, "dispatch_poll_interval": 0.2}


@pytest.fixture
async def handler() -> AsyncIterator[HandlerServer]:
    async with handler_server() as server:
        yield server


@pytest.fixture
async def client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(make_settings(**FAST))) as client:
        yield client


async def register(database: str, **fields: Any) -> int:
    """Register a handler (not the default one unless said) in `database`; its id."""
    conn = await asyncpg.connect(database)
    try:
        handler, _ = await add_handler(conn, NewHandler(**{"default": False, **fields}))
    finally:
        await conn.close()
    return handler.id
