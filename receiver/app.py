"""The application factory and its lifespan: the pool, the writer, the routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypedDict

import asyncpg
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import RedirectResponse
from starlette.routing import Route

from receiver import background, heap
from receiver.api.auth import KeyNotLoaded, Tokens
from receiver.api.metrics import MetricsEndpoint
from receiver.api.params import BadParameter
from receiver.api.routes import api_routes
from receiver.background import destinations, projector, work_of
from receiver.console import console_routes
from receiver.db.engine import UNAVAILABLE_ERRORS, create_pool
from receiver.db.replica import Reads
from receiver.health import Readiness, healthz
from receiver.http import (
    BodyLimit,
    DotSegments,
    PrivateAnswers,
    bad_parameter,
    database_unavailable,
    http_exception,
    query_cancelled,
    server_error,
)
from receiver.ingest.auth import WebhookAuth
from receiver.ingest.endpoint import WebhookEndpoint, WebhookLane
from receiver.ingest.writer import GroupCommitWriter
from receiver.projection.daily_stats import keep
from receiver.settings import Settings, SettingsError

log = structlog.get_logger("receiver.app")


class State(TypedDict):
    """What the lifespan gives each request (`request.state`)."""

    pool: asyncpg.Pool
    writer: GroupCommitWriter
    writer_pool: asyncpg.Pool
    api_pool: asyncpg.Pool
    reads: Reads
    """Where the read pages read: the replica while it is in time, else `api_pool`."""


async def _opened_pool(opened: AsyncExitStack, url: str, **options: Any) -> asyncpg.Pool:
    """A pool (receiver.db.engine.create_pool), closed when `opened` unwinds."""
    pool = await create_pool(url, **options)
    opened.push_async_callback(_close, pool)
    return pool


async def _close(pool: asyncpg.Pool) -> None:
    # Bounded: a connection that does not come back in time is cut.
    try:
        async with asyncio.timeout(3):
            await pool.close()
    except TimeoutError:
        pool.terminate()


WEBHOOK_PATH = "/webhooks/callr"


def create_app(settings: Settings) -> Starlette:
    """Build the ASGI app for `settings`; connections open in the lifespan, not here."""
    database_url = settings.database_url
    if database_url is None:
        raise SettingsError(
            "RECEIVER_DATABASE_URL is not set (`receiver serve` starts an embedded database; "
            "an ASGI server run by hand needs the URL)"
        )
    if not settings.webhook_auth_configured and not settings.allow_unauthenticated:
        raise SettingsError(
            "no webhook authentication is configured: set RECEIVER_CALLR_HMAC_SECRETS, "
            "RECEIVER_CALLR_URL_TOKEN or RECEIVER_CALLR_BASIC_AUTH"
        )
    auth = WebhookAuth.from_settings(settings)
    # Where forwards may go: the API, the console and the dispatcher check the same.
    allowed = destinations(settings)
    endpoint = WebhookEndpoint(
        auth=auth,
        max_body_bytes=settings.max_body_bytes,
        retry_after=settings.retry_after,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        # Whatever was opened is closed in reverse, whichever step fails.
        async with AsyncExitStack() as opened:
            pool = await _opened_pool(
                opened,
                database_url,
                pooled=settings.pooled,
                size=settings.db_pool_size,
                command_timeout=settings.db_command_timeout,
                session_state=False,
            )
            projecting = projector(settings, pool)
            writer_pool = await _opened_pool(
                opened,
                database_url,
                pooled=settings.pooled,
                size=settings.writer_concurrency,
                command_timeout=settings.db_command_timeout,
                session_state=False,
                generic_plans=True,
            )
            # Dashboards get a pool of their own, small and with a statement timeout, so
            # that a heavy query can neither take the writer's connections nor run on.
            api_pool = await _opened_pool(
                opened,
                database_url,
                pooled=settings.pooled,
                size=settings.api_pool_size,
                command_timeout=settings.api_statement_timeout + 1,
                statement_timeout=settings.api_statement_timeout,
                # Stats group millions of rows: enough memory to do it without temp files.
                work_mem="64MB",
            )
            replica = None
            if settings.read_database_url:
                replica = await _opened_pool(
                    opened,
                    settings.read_database_url,
                    pooled=settings.pooled,
                    size=settings.api_pool_size,
                    command_timeout=settings.api_statement_timeout + 1,
                    statement_timeout=settings.api_statement_timeout,
                    work_mem="64MB",
                )
            reads = Reads(api_pool, replica, max_lag=settings.read_replica_max_lag.total_seconds())
            writer = GroupCommitWriter(
                writer_pool,
                batch_max=settings.writer_batch_max,
                concurrency=settings.writer_concurrency,
                queue_max=settings.writer_queue_max,
                ack_timeout=settings.ack_timeout,
                # This process's projector wakes at once, with what the writer parsed; the
                # others on NOTIFY.
                stored=projecting.stored if settings.projector else None,
            )
            await writer.start()
            opened.push_async_callback(writer.stop)
            work = work_of(settings, pool, projecting=projecting, allowed=allowed)
            work["daily-stats"] = lambda: keep(api_pool, every=settings.stats_keep_interval)
            if replica is not None:
                await reads.check()
                work["read-replica"] = reads.run
            if not await tokens.load_key(api_pool):
                # Started before the migrations: the key is read once they ran.
                work["deployment-key"] = lambda: tokens.keep_trying_key(api_pool)
            heap.settle_after_startup()
            await opened.enter_async_context(background.running(work))
            yield {
                "pool": pool,
                "writer": writer,
                "writer_pool": writer_pool,
                "api_pool": api_pool,
                "reads": reads,
            }

    tokens = Tokens(
        readers=settings.api_tokens, admins=settings.admin_tokens, senders=settings.send_tokens
    )
    overlapping = tokens.overlapping_prefixes()
    if overlapping:
        log.warning(
            "send_prefixes_overlap",
            prefixes=overlapping,
            hint="a prefix that ends in a letter or digit also covers longer names"
            " ('teamA' covers 'teamAB'): end each with a delimiter, such as 'teamA-'",
        )
    webhook_path = f"{WEBHOOK_PATH}/{{token}}" if auth.url_token else WEBHOOK_PATH
    routes = [
        Route(webhook_path, endpoint.receive, methods=["POST"]),
        # A person who opens the service's address gets the console, not a 404.
        Route("/", lambda request: RedirectResponse("/console", 307), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", Readiness().readyz, methods=["GET"]),
        Route(
            "/metrics",
            MetricsEndpoint(
                settings.metrics_token,
                stall_after=settings.projection_stall_after,
                silent_after=settings.webhooks_silent_after,
            ).metrics,
            methods=["GET"],
        ),
        *api_routes(tokens, region=settings.default_region),
        *console_routes(settings, tokens, endpoint.refusals),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            # The webhook's POST first: it matches its own path exactly (a token never
            # holds a slash), and goes through nothing else.
            Middleware(
                WebhookLane,
                endpoint=endpoint,
                path=WEBHOOK_PATH,
                with_token=auth.url_token is not None,
            ),
            Middleware(DotSegments),
            Middleware(BodyLimit),
            Middleware(PrivateAnswers),
        ],
        lifespan=lifespan,
        exception_handlers={
            HTTPException: http_exception,
            BadParameter: bad_parameter,
            asyncpg.exceptions.QueryCanceledError: query_cancelled,
            KeyNotLoaded: database_unavailable,
            **dict.fromkeys(UNAVAILABLE_ERRORS, database_unavailable),
            500: server_error,
        },
    )
    app.state.settings = settings
    app.state.destinations = allowed
    return app
