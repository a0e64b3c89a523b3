"""No secret in a log line or a read view: the URL token, API tokens, passwords in URLs.

A real `receiver serve` is taken down every path that once printed one: the start
banner, a wrong URL token, an invalid body, sign-in, a handler URL with credentials,
a forward delivered to a handler; then its whole output is searched.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from structlog.testing import capture_logs

from receiver.http import loggable_path, server_error
from testkit.callr_events import mo_event
from testkit.fake_callr import API_KEY, FakeCallr, fake_callr
from testkit.handler_server import handler_server, wait_for
from testkit.support import console_sign_in, example
from tests.reliability.conftest import Receiver

URL_TOKEN = "url-token-that-must-stay-secret-0123"
ADMIN = "admin-token-that-must-stay-secret-0123"
PASSWORD = "handler-password-that-must-stay-secret"
SEND_TOKEN = "send-token-that-must-stay-secret-0123"


@pytest.mark.slow
async def test_no_secret_reaches_the_output_of_a_run_that_takes_every_path(
    database_url: str, tmp_path: Path
) -> None:
    async with fake_callr() as callr:
        await _take_every_path(database_url, tmp_path, callr)


async def _take_every_path(database_url: str, tmp_path: Path, callr: FakeCallr) -> None:
    receiver = Receiver(
        database_url,
        tmp_path,
        RECEIVER_CALLR_HMAC_SECRETS="",
        RECEIVER_CALLR_URL_TOKEN=URL_TOKEN,
        RECEIVER_ADMIN_TOKENS=ADMIN,
        RECEIVER_SEND_TOKENS=f"{SEND_TOKEN}=shop",
        RECEIVER_DISPATCHER="true",
        RECEIVER_DISPATCH_POLL_INTERVAL="0.2",
        RECEIVER_CALLR_API_URL=callr.url,
        RECEIVER_CALLR_API_KEY=API_KEY,
    )
    auth = {"authorization": f"Bearer {ADMIN}"}
    async with handler_server() as handler, httpx.AsyncClient(base_url=receiver.url) as client:
        await asyncio.to_thread(receiver.start)
        try:
            webhook = f"/webhooks/callr/{URL_TOKEN}"
            assert (
                await client.post("/webhooks/callr/wrong-token", content=b"{}")
            ).status_code == 404
            assert (await client.post(webhook, content=b"{not json")).status_code == 400
            refused = await client.post(
                "/api/v1/handlers",
                headers=auth,
                json={"user_data": "shop", "url": f"http://alice:{PASSWORD}@127.0.0.1:9/h"},
            )
            assert refused.status_code == 400
            added = await client.post(
                "/api/v1/handlers",
                headers=auth,
                json={"user_data": "shop", "url": handler.url("/h")},
            )
            assert added.status_code == 201
            mo = mo_event("secret-mo", "SECRET1", sender="+33600000001", user_data="shop")
            assert (await client.post(webhook, content=mo)).status_code == 200
            assert (await client.post(webhook, content=example("v1-sms.mo"))).status_code == 200
            await wait_for(lambda: len(handler.on("/h")) == 1, seconds=15)
            signed_in = await console_sign_in(client, ADMIN)
            assert signed_in.status_code == 303
            wrong = await console_sign_in(client, URL_TOKEN)
            assert wrong.status_code == 401
            sent = await client.post(
                "/api/v1/sms",
                headers={"authorization": f"Bearer {SEND_TOKEN}"},
                json={"to": "+33600000002", "text": "hello", "user_data": "shop-1"},
            )
            assert sent.status_code == 202
            await wait_for(lambda: len(callr.created) == 1, seconds=15)
        finally:
            await asyncio.to_thread(receiver.stop)
    output = receiver.log.read_text()
    assert f"webhook URL     {receiver.url}/webhooks/callr/…{URL_TOKEN[-4:]}" in output
    assert "(token from RECEIVER_CALLR_URL_TOKEN, shown by its last 4)" in output
    assert '"event":"forward"' in output  # the forward was logged, its URL not
    assert '"event":"send_accepted"' in output
    for secret in (URL_TOKEN, ADMIN, PASSWORD, handler.url("/h"), SEND_TOKEN, API_KEY):
        assert secret not in output, secret


async def test_an_unhandled_error_on_the_webhook_path_logs_no_url_token() -> None:
    request = Request(
        {"type": "http", "method": "POST", "path": f"/webhooks/callr/{URL_TOKEN}", "headers": []}
    )
    with capture_logs() as logs:
        answer = await server_error(request, RuntimeError("a bug"))
    assert answer.status_code == 500
    assert logs[0]["path"] == "/webhooks/callr/***"
    assert URL_TOKEN not in str(logs)
    assert loggable_path("/api/v1/messages") == "/api/v1/messages"
