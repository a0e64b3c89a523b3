"""The application factory and its lifespan: the pool, the writer, the routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from receiver.db.engine import create_pool
from receiver.db.migrate import head_revision
from receiver.health import Readiness, healthz
from receiver.http import http_exception, server_error
from receiver.ingest.auth import WebhookAuth
from receiver.ingest.endpoint import WebhookEndpoint
from receiver.ingest.writer import GroupCommitWriter
from receiver.settings import Settings, SettingsError

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
    endpoint = WebhookEndpoint(
        auth=auth,
        max_body_bytes=settings.max_body_bytes,
        ack_timeout=settings.ack_timeout,
        retry_after=settings.retry_after,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        pool = await create_pool(
            database_url, size=settings.db_pool_size, command_timeout=settings.db_command_timeout
        )
        writer = GroupCommitWriter(
            pool,
            batch_max=settings.writer_batch_max,
            concurrency=settings.writer_concurrency,
            queue_max=settings.writer_queue_max,
        )
        await writer.start()
        try:
            yield {"pool": pool, "writer": writer}
        finally:
            await writer.stop()
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                pool.terminate()

    webhook_path = f"{WEBHOOK_PATH}/{{token}}" if auth.url_token else WEBHOOK_PATH
    routes = [
        Route(webhook_path, endpoint.receive, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", Readiness(head_revision()).readyz, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_exception, 500: server_error},
    )
