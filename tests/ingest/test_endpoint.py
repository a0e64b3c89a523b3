from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from receiver.app import create_app
from testkit.support import EXAMPLE_NAMES, example, fetch, running, signed_headers, with_fields
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

TOKEN_PATH = f"/webhooks/callr/{TEST_URL_TOKEN}"
JSON = {"content-type": "application/json"}


async def stored_events(url: str) -> list[dict[str, Any]]:
    return await fetch(url, "SELECT * FROM events ORDER BY received_at")


async def stored_deliveries(url: str) -> list[dict[str, Any]]:
    return await fetch(url, "SELECT * FROM deliveries ORDER BY id")


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
async def test_an_example_is_stored_byte_for_byte_before_the_answer(
    name: str, make_settings: SettingsFactory, database_url: str
) -> None:
    body = example(name)
    headers = {**JSON, "x-callr-eventid": "header-id", "user-agent": "CALLR/API 0.9942"}
    async with running(create_app(make_settings())) as client:
        response = await client.post(TOKEN_PATH, content=body, headers=headers)
    event_id = json.loads(body).get("event_id") or json.loads(body)["id"]
    assert response.status_code == 200
    assert response.json() == {"result": "stored", "event_id": event_id}
    (event,) = await stored_events(database_url)
    assert event["event_id"] == event_id
    assert event["body"] == body
    assert event["type"] == json.loads(body)["type"]
    assert event["state"] == "processed"
    assert event["emitted_at"] is not None
    (delivery,) = await stored_deliveries(database_url)
    assert delivery["attempt"] == 0
    assert delivery["conflict"] is False
    assert delivery["subscription"] == (json.loads(body).get("hook_hash") or "pdszbxss")
    assert json.loads(delivery["headers"]) == {
        "x-callr-eventid": "header-id",
        "user-agent": "CALLR/API 0.9942",
        "content-type": "application/json",
    }


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
async def test_a_signed_example_is_accepted_and_its_signature_kept(
    name: str, make_settings: SettingsFactory, database_url: str
) -> None:
    body = example(name)
    settings = make_settings(callr_url_token=None, callr_hmac_secrets="s3cret")
    async with running(create_app(settings)) as client:
        response = await client.post(
            "/webhooks/callr", content=body, headers=signed_headers(body, "s3cret")
        )
    assert response.status_code == 200
    (delivery,) = await stored_deliveries(database_url)
    headers = json.loads(delivery["headers"])
    assert (
        headers["x-callr-hmacsignature"] == signed_headers(body, "s3cret")["x-callr-hmacsignature"]
    )


@pytest.mark.parametrize(
    "headers",
    [
        JSON,
        signed_headers(example("v1-sms.mo"), "wrong-secret"),
        signed_headers(example("v1-sms.mo"), "s3cret", "sha512"),
        {**JSON, "x-callr-hmacsignature": "truncated"},
    ],
    ids=["missing", "wrong-secret", "other-algorithm", "truncated"],
)
async def test_a_bad_signature_is_refused_and_nothing_is_stored(
    headers: dict[str, str], make_settings: SettingsFactory, database_url: str
) -> None:
    settings = make_settings(callr_url_token=None, callr_hmac_secrets="s3cret")
    async with running(create_app(settings)) as client:
        response = await client.post(
            "/webhooks/callr", content=example("v1-sms.mo"), headers=headers
        )
    assert response.status_code == 401
    assert response.json() == {"error": "signature is missing or does not match the body"}
    assert await stored_events(database_url) == []


async def test_the_signature_is_checked_on_the_raw_bytes_not_the_json(
    make_settings: SettingsFactory, database_url: str
) -> None:
    body = example("v1-sms.mo")
    reformatted = json.dumps(json.loads(body)).encode()
    settings = make_settings(callr_url_token=None, callr_hmac_secrets="s3cret")
    async with running(create_app(settings)) as client:
        response = await client.post(
            "/webhooks/callr", content=reformatted, headers=signed_headers(body, "s3cret")
        )
    assert response.status_code == 401


@pytest.mark.parametrize("algorithm", ["sha512", "md5"])
async def test_the_configured_algorithm_is_used(
    algorithm: str, make_settings: SettingsFactory
) -> None:
    body = example("v2.sms.inbound.received")
    settings = make_settings(
        callr_url_token=None, callr_hmac_secrets="s3cret", callr_hmac_algorithm=algorithm.upper()
    )
    async with running(create_app(settings)) as client:
        good = await client.post(
            "/webhooks/callr", content=body, headers=signed_headers(body, "s3cret", algorithm)
        )
        default = await client.post(
            "/webhooks/callr", content=body, headers=signed_headers(body, "s3cret")
        )
    assert good.status_code == 200
    assert default.status_code == 401


async def test_during_a_rotation_both_secrets_are_accepted(make_settings: SettingsFactory) -> None:
    settings = make_settings(callr_url_token=None, callr_hmac_secrets="old-secret, new-secret")
    async with running(create_app(settings)) as client:
        for secret, name in (
            ("old-secret", "v1-sms.mo"),
            ("new-secret", "v2.sms.inbound.received"),
        ):
            body = example(name)
            response = await client.post(
                "/webhooks/callr", content=body, headers=signed_headers(body, secret)
            )
            assert response.status_code == 200, secret


@pytest.mark.parametrize("path", ["/webhooks/callr/wrong-token-0123456789", "/webhooks/callr"])
async def test_a_wrong_or_missing_url_token_is_not_found(
    path: str, make_settings: SettingsFactory, database_url: str
) -> None:
    async with running(create_app(make_settings())) as client:
        response = await client.post(path, content=example("v1-sms.mo"), headers=JSON)
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}
    assert await stored_events(database_url) == []


def basic(credentials: str) -> dict[str, str]:
    return {**JSON, "authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


async def test_basic_auth_accepts_the_configured_user_only(
    make_settings: SettingsFactory, database_url: str
) -> None:
    settings = make_settings(callr_url_token=None, callr_basic_auth="callr:pa55word")
    body = example("v1-sms.mo")
    async with running(create_app(settings)) as client:
        wrong = await client.post("/webhooks/callr", content=body, headers=basic("callr:guess"))
        missing = await client.post("/webhooks/callr", content=body, headers=JSON)
        garbage = await client.post(
            "/webhooks/callr", content=body, headers={"authorization": "Basic %%%"}
        )
        assert await stored_events(database_url) == []
        right = await client.post("/webhooks/callr", content=body, headers=basic("callr:pa55word"))
    for refused in (wrong, missing, garbage):
        assert refused.status_code == 401
        assert refused.json() == {"error": "basic authentication failed"}
        assert refused.headers["www-authenticate"].startswith("Basic")
    assert right.status_code == 200
    assert len(await stored_events(database_url)) == 1


async def test_every_configured_check_must_pass(make_settings: SettingsFactory) -> None:
    settings = make_settings(callr_hmac_secrets="s3cret", callr_basic_auth="callr:pa55word")
    body = example("v1-sms.mo")
    all_three = {**signed_headers(body, "s3cret"), **basic("callr:pa55word")}
    async with running(create_app(settings)) as client:
        no_signature = await client.post(TOKEN_PATH, content=body, headers=basic("callr:pa55word"))
        no_basic = await client.post(
            TOKEN_PATH, content=body, headers=signed_headers(body, "s3cret")
        )
        no_token = await client.post("/webhooks/callr", content=body, headers=all_three)
        accepted = await client.post(TOKEN_PATH, content=body, headers=all_three)
    assert (no_signature.status_code, no_basic.status_code) == (401, 401)
    assert no_token.status_code == 404
    assert accepted.status_code == 200


async def test_broken_json_is_refused_with_its_reason_and_kept(
    make_settings: SettingsFactory, database_url: str
) -> None:
    body = b'{"event_id": "abc", "type": "sms.mo", "try": 0, "data": {'
    async with running(create_app(make_settings())) as client:
        first = await client.post(TOKEN_PATH, content=body, headers=JSON)
        again = await client.post(TOKEN_PATH, content=body, headers=JSON)
    key = "sha256:" + hashlib.sha256(body).hexdigest()
    for response in (first, again):
        assert response.status_code == 400
        assert response.json()["error"].startswith("body is not valid JSON")
        assert response.json()["event_id"] == key
        assert response.json()["stored"] is True
    (event,) = await stored_events(database_url)
    assert (event["event_id"], event["state"], event["body"]) == (key, "invalid", body)
    assert event["reason"].startswith("body is not valid JSON")
    assert len(await stored_deliveries(database_url)) == 2


async def test_an_unknown_type_is_kept_as_unhandled(
    make_settings: SettingsFactory, database_url: str
) -> None:
    body = with_fields(example("v1-sms.mo"), type="billing.credit", data={"amount": "12.00"})
    async with running(create_app(make_settings())) as client:
        response = await client.post(TOKEN_PATH, content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json() == {
        "result": "unhandled",
        "event_id": "c5df14852226895334vk6tjqfCS3PFEG",
    }
    (event,) = await stored_events(database_url)
    assert (event["type"], event["state"], event["body"]) == ("billing.credit", "unhandled", body)


async def test_an_event_without_an_id_is_refused_and_kept(
    make_settings: SettingsFactory, database_url: str
) -> None:
    document = json.loads(example("v2.sms.outbound.updated"))
    del document["id"]
    body = json.dumps(document).encode()
    async with running(create_app(make_settings())) as client:
        response = await client.post(TOKEN_PATH, content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"] == "field 'id' is missing"
    (event,) = await stored_events(database_url)
    assert event["state"] == "invalid"
    assert event["type"] == "v2.sms.outbound.updated"
    assert event["reason"] == "field 'id' is missing"
    assert event["body"] == body


async def test_wrong_field_types_are_refused_and_kept_under_the_event_id(
    make_settings: SettingsFactory, database_url: str
) -> None:
    body = with_fields(example("v1-sms.mo"), try_="zero")
    async with running(create_app(make_settings())) as client:
        response = await client.post(TOKEN_PATH, content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json() == {
        "error": "field 'try' must be an integer, not a JSON string",
        "event_id": "c5df14852226895334vk6tjqfCS3PFEG",
        "stored": True,
    }
    (event,) = await stored_events(database_url)
    assert (event["event_id"], event["state"]) == ("c5df14852226895334vk6tjqfCS3PFEG", "invalid")


async def test_a_retry_is_a_new_delivery_of_the_same_event(
    make_settings: SettingsFactory, database_url: str
) -> None:
    body = example("v1-sms.mt.status_update")
    async with running(create_app(make_settings())) as client:
        first = await client.post(TOKEN_PATH, content=body, headers=JSON)
        retry = await client.post(TOKEN_PATH, content=with_fields(body, try_=1), headers=JSON)
        repeat = await client.post(TOKEN_PATH, content=with_fields(body, try_=1), headers=JSON)
    assert first.json()["result"] == "stored"
    assert retry.json()["result"] == "duplicate"
    assert repeat.json()["result"] == "duplicate"
    (event,) = await stored_events(database_url)
    assert event["body"] == body
    assert [d["attempt"] for d in await stored_deliveries(database_url)] == [0, 1]


async def test_the_same_event_through_two_subscriptions_is_one_event(
    make_settings: SettingsFactory, database_url: str
) -> None:
    body = example("v1-sms.mt.status_update")
    dynamic = with_fields(body, hook_hash=None)
    async with running(create_app(make_settings())) as client:
        first = await client.post(TOKEN_PATH, content=body, headers=JSON)
        second = await client.post(TOKEN_PATH, content=dynamic, headers=JSON)
    assert (first.json()["result"], second.json()["result"]) == ("stored", "duplicate")
    assert len(await stored_events(database_url)) == 1
    deliveries = await stored_deliveries(database_url)
    assert [d["conflict"] for d in deliveries] == [False]


async def test_different_content_under_a_known_id_is_kept_as_a_conflict(
    make_settings: SettingsFactory, database_url: str
) -> None:
    body = example("v1-sms.mt.status_update")
    document = json.loads(body)
    document["data"]["text"] = "Something else entirely"
    conflicting = json.dumps(document).encode()
    async with running(create_app(make_settings())) as client:
        await client.post(TOKEN_PATH, content=body, headers=JSON)
        response = await client.post(TOKEN_PATH, content=conflicting, headers=JSON)
        again = await client.post(TOKEN_PATH, content=conflicting, headers=JSON)
    assert response.status_code == 200
    assert response.json()["result"] == "duplicate"
    assert again.status_code == 200
    (event,) = await stored_events(database_url)
    assert event["body"] == body
    original, conflict = await stored_deliveries(database_url)
    assert (original["conflict"], original["body"]) == (False, None)
    assert (conflict["conflict"], conflict["body"]) == (True, conflicting)


async def test_a_body_over_the_limit_is_refused_with_413(
    make_settings: SettingsFactory, database_url: str
) -> None:
    body = with_fields(example("v1-sms.mo"), padding="x" * 5000)
    async with running(create_app(make_settings(max_body_bytes=4096))) as client:
        declared = await client.post(TOKEN_PATH, content=body, headers=JSON)

        async def chunks() -> Any:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        streamed = await client.post(TOKEN_PATH, content=chunks(), headers=JSON)
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json() == {"error": "body is larger than 4096 bytes"}
    assert await stored_events(database_url) == []


async def test_other_methods_and_paths_answer_json_errors(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings())) as client:
        wrong_method = await client.get(TOKEN_PATH)
        unknown = await client.get("/nothing-here")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"error": "Method Not Allowed"}
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "Not Found"}


async def test_another_method_or_path_on_the_webhook_is_answered_in_json(
    make_settings: SettingsFactory,
) -> None:
    async with running(create_app(make_settings())) as client:
        stored = await client.post(TOKEN_PATH, content=example("v1-sms.mo"))
        wrong_method = await client.get(TOKEN_PATH)
        no_token = await client.post("/webhooks/callr", content=example("v1-sms.mo"))
        deeper = await client.post(f"{TOKEN_PATH}/more", content=example("v1-sms.mo"))
    assert stored.status_code == 200
    assert stored.json()["result"] == "stored"
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"error": "Method Not Allowed"})
    assert (no_token.status_code, no_token.json()) == (404, {"error": "Not Found"})
    assert (deeper.status_code, deeper.json()) == (404, {"error": "Not Found"})


async def test_a_bug_on_the_webhook_path_is_a_500_without_a_trace(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(body: bytes) -> Any:
        raise RuntimeError("secret detail of a bug")

    monkeypatch.setattr("receiver.ingest.endpoint.parse_envelope", broken)
    app = create_app(make_settings())
    async with (
        LifespanManager(app, startup_timeout=20, shutdown_timeout=20) as manager,
        httpx.AsyncClient(
            # The app's error middleware answers, then raises again for the server's log.
            transport=httpx.ASGITransport(app=manager.app, raise_app_exceptions=False),
            base_url="http://receiver.test",
        ) as client,
    ):
        response = await client.post(TOKEN_PATH, content=example("v1-sms.mo"), headers=JSON)
    assert (response.status_code, response.json()) == (500, {"error": "internal error"})
    assert "secret detail" not in response.text
