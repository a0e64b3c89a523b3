"""What every API answer carries, and ids with any character CALLR may send."""

from __future__ import annotations

from urllib.parse import quote

import orjson

from receiver.app import create_app
from testkit.support import console_sign_in, example, running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

TOKEN = "answers-read-token-0123"
AUTH = {"authorization": f"Bearer {TOKEN}"}
WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"


async def test_every_api_answer_is_private_and_not_sniffed(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings(api_tokens=TOKEN))) as client:
        answers = {
            "ok": await client.get("/api/v1/status", headers=AUTH),
            "no token": await client.get("/api/v1/messages"),
            "bad parameter": await client.get("/api/v1/messages?limit=abc", headers=AUTH),
            "not found": await client.get("/api/v1/events/nothing-here", headers=AUTH),
            "wrong method": await client.delete("/api/v1/status", headers=AUTH),
            "metrics": await client.get("/metrics"),
        }
        webhook = await client.post(WEBHOOK, content=example("v1-sms.mo"))
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "ok": 200,
        "no token": 401,
        "bad parameter": 400,
        "not found": 404,
        "wrong method": 405,
        "metrics": 200,
    }
    for name, answer in answers.items():
        assert answer.headers["cache-control"] == "no-store", name
        assert answer.headers["x-content-type-options"] == "nosniff", name
    # CALLR's answers are left as they were.
    assert "cache-control" not in webhook.headers


async def test_an_id_with_a_slash_and_other_characters_is_found(
    make_settings: SettingsFactory,
) -> None:
    odd_event, odd_sms = "ev/2026?x=1#part", "sms/7?x#y"
    document = orjson.loads(example("v2.sms.inbound.received"))
    document["id"], document["payload"]["sid"] = odd_event, odd_sms
    body = orjson.dumps(document)
    async with running(create_app(make_settings(api_tokens=TOKEN))) as client:
        assert (await client.post(WEBHOOK, content=body)).status_code == 200
        await until_projected(client)
        event = await client.get(f"/api/v1/events/{quote(odd_event, safe='')}", headers=AUTH)
        assert event.status_code == 200, event.text
        assert event.json()["event_id"] == odd_event
        sms_id = event.json()["sms_id"]
        assert sms_id == odd_sms
        message = await client.get(f"/api/v1/messages/{quote(sms_id, safe='')}", headers=AUTH)
        assert message.status_code == 200, message.text
        assert message.json()["id"] == sms_id

        await console_sign_in(client, TOKEN)
        page = await client.get(f"/console/events/{quote(odd_event, safe='')}")
        assert page.status_code == 200
        assert f"/console/messages/{quote(sms_id)}" in page.text
        linked = await client.get(f"/console/messages/{quote(sms_id)}")
        assert linked.status_code == 200
        assert odd_event.replace("&", "&amp;") in linked.text


async def test_a_body_past_the_limit_is_a_413_whatever_the_route(
    make_settings: SettingsFactory,
) -> None:
    from collections.abc import AsyncIterator

    from receiver.http import MAX_REQUEST_BODY

    big = b"x" * (MAX_REQUEST_BODY + 1)

    async def chunked() -> AsyncIterator[bytes]:
        # No Content-Length: the limit holds on the bytes as they come.
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    admin = {"authorization": "Bearer answers-admin-token-0123"}
    settings = make_settings(api_tokens=TOKEN, admin_tokens="answers-admin-token-0123")
    async with running(create_app(settings)) as client:
        for method, path, reads in (
            ("POST", "/api/v1/sms/preview", True),
            ("POST", "/api/v1/sms", False),  # sending is not configured: a 503 first
            ("PUT", "/api/v1/messages/abc", True),
            ("POST", "/api/v1/handlers", True),
            ("POST", "/console/login", False),  # its forms have a smaller limit of their own
        ):
            # Said by its Content-Length: refused before anything else is looked at; sent
            # in chunks: refused once the route reads past the limit.
            for content in (big, chunked()) if reads else (big,):
                kind = "application/x-www-form-urlencoded" if "console" in path else "text/plain"
                headers = admin | {"content-type": kind}
                answer = await client.request(method, path, content=content, headers=headers)
                assert answer.status_code == 413, (path, answer.text)
                assert "larger than" in answer.json()["error"]
        # Up to the limit, the route reads it and says what is wrong with it.
        fits = await client.post("/api/v1/sms/preview", content=b"x" * 1000, headers=AUTH)
        assert fits.status_code == 400


async def test_a_path_with_dot_segments_is_refused_before_any_route(
    make_settings: SettingsFactory,
) -> None:
    """Straight to uvicorn, as a proxy that matched the normalised path would pass it on."""
    import asyncio
    from urllib.parse import urlsplit

    from testkit.support import serving

    async def raw_get(base: str, path: str) -> tuple[int, str]:
        where = urlsplit(base)
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        received = await reader.read()
        writer.close()
        head, _, body = received.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()

    async with serving(create_app(make_settings(api_tokens=TOKEN))) as base:
        for path in (
            "/api/v1/messages/x/../../../../webhooks/callr",
            "/api/v1/messages/x/%2e%2e/%2E%2E/status",
            "/console/messages/x/./../../../webhooks/callr",
            "/webhooks/callr/../api/v1/status",
        ):
            status, body = await raw_get(base, path)
            assert status == 400, (path, status, body)
            assert "segments" in orjson.loads(body)["error"]
        # An id with dots that are not whole segments is an id like any other.
        status, _ = await raw_get(base, "/api/v1/messages/a..b")
        assert status == 401
