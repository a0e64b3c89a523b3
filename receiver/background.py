"""The work a process runs beside answering HTTP (`serve`) or instead of it (`worker`):
the projector, the forward dispatcher, the sender and reconcile, each built from the
settings, started and stopped one way for both."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog

from receiver.db.engine import Pool
from receiver.forwarding.destinations import Destinations
from receiver.forwarding.dispatcher import Dispatcher
from receiver.forwarding.policy import FORWARD_BACKOFF, RetryPolicy
from receiver.projection.projector import Projector
from receiver.replay.callr import api_client, reconcile_forever
from receiver.sending.sender import Sender
from receiver.settings import Settings

log = structlog.get_logger("receiver.background")

# Seconds the tasks get to finish what they hold once cancelled.
STOP_TIMEOUT = 5.0

Work = Callable[[], Coroutine[Any, Any, object]]


def destinations(settings: Settings) -> Destinations:
    """Where the settings let forwards go."""
    return Destinations.of(settings.handler_allowed_networks, *settings.database_urls)


def dispatcher(settings: Settings, pool: Pool, allowed: Destinations | None = None) -> Dispatcher:
    """The forward dispatcher the settings describe, on `pool` (`allowed`: the settings'
    destinations, when the caller has worked them out already)."""
    assert settings.session_database_url is not None
    return Dispatcher(
        pool,
        settings.session_database_url,
        destinations=allowed or destinations(settings),
        policy=RetryPolicy(
            max_attempts=settings.forward_max_attempts,
            backoff=dataclasses.replace(FORWARD_BACKOFF, first=settings.forward_backoff_base),
        ),
        concurrency=settings.dispatch_concurrency,
        poll_interval=settings.dispatch_poll_interval,
        disable_after=settings.handler_disable_after.total_seconds(),
    )


def projector(settings: Settings, pool: Pool) -> Projector:
    """The projector the settings describe, on `pool`."""
    return Projector(
        pool,
        settings.session_database_url,
        batch_max=settings.projector_batch_max,
        batch_bytes=settings.projector_batch_bytes,
        poll_interval=settings.projector_poll_interval,
        routing_window=timedelta(hours=settings.routing_window_hours),
    )


def sender(settings: Settings, pool: Pool) -> Sender:
    """The sender the settings describe, on `pool` (sending must be configured)."""
    assert settings.session_database_url is not None
    return Sender(
        pool,
        settings.session_database_url,
        lambda: api_client(settings, pool, sending=True),
        can_list=frozenset(
            api
            for api, able in (("v1", settings.callr_api_configured), ("v2", settings.callr_api_key))
            if able
        ),
        timeout=settings.callr_api_timeout,
        lookup_after=settings.send_lookup_after,
        unknown_after=settings.send_unknown_after,
        routing_window=timedelta(hours=settings.routing_window_hours),
        concurrency=settings.send_concurrency,
    )


def sending(settings: Settings) -> bool:
    """Whether this process runs a sender: asked to, and CALLR's API configured for it."""
    return settings.sender and settings.sending_api is not None


def work_of(
    settings: Settings,
    pool: Pool,
    *,
    projecting: Projector | None = None,
    allowed: Destinations | None = None,
) -> dict[str, Work]:
    """The background work the settings ask of a process, by name (`projecting`: the
    projector already built, which the webhook's writer wakes)."""
    work: dict[str, Work] = {}
    if settings.dispatcher:
        work["dispatcher"] = dispatcher(settings, pool, allowed).run
    if settings.projector:
        work["projector"] = (projecting or projector(settings, pool)).run
    if settings.callr_api_configured:
        work["reconcile"] = lambda: reconcile_forever(pool, settings)
    if sending(settings):
        work["sender"] = sender(settings, pool).run
    return work


@asynccontextmanager
async def running(work: dict[str, Work]) -> AsyncIterator[list[asyncio.Task[object]]]:
    """Each piece of `work` as a task of its name while the block runs; on the way out
    each is cancelled and given STOP_TIMEOUT seconds to end."""
    tasks = [asyncio.create_task(start(), name=name) for name, start in work.items()]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            ended, late = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            if late:
                log.warning("background_stop_late", tasks=sorted(t.get_name() for t in late))
            for task in ended:
                failure = None if task.cancelled() else task.exception()
                if failure is not None:
                    log.error("background_failed", task=task.get_name(), error=repr(failure))
