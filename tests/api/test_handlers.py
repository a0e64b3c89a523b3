from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from typing import Any

import jsonschema
import pytest

from receiver.app import create_app
from testkit.support import console_sign_in, running
from tests.conftest import SettingsFactory

TOKEN = "admin-token-for-the-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/handlers"),
        ("POST", "/api/v1/handlers"),
        ("DELETE", "/api/v1/handlers/1"),
        ("POST", "/api/v1/handlers/1/disable"),
        ("POST", "/api/v1/handlers/1/enable"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong", "not-bearer"],
)
async def test_every_route_needs_a_valid_token(
    method: str, path: str, headers: dict[str, str], make_settings: SettingsFactory
) -> None:
    async with running(create_app(make_settings(admin_tokens=TOKEN))) as client:
        response = await client.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert response.json()["error"].startswith("a valid API token is required")


async def test_the_webhook_token_does_not_open_the_api(make_settings: SettingsFactory) -> None:
    settings = make_settings(admin_tokens=TOKEN)
    async with running(create_app(settings)) as client:
        response = await client.get(
            "/api/v1/handlers", headers={"authorization": f"Bearer {settings.callr_url_token}"}
        )
    assert response.status_code == 401


async def test_without_configured_tokens_the_api_is_closed(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings())) as client:
        response = await client.get("/api/v1/handlers", headers={"authorization": "Bearer "})
    assert response.status_code == 401


async def test_handlers_are_added_listed_toggled_and_removed(
    make_settings: SettingsFactory,
) -> None:
    async with running(
        create_app(make_settings(admin_tokens=f"another-admin-token-0123,{TOKEN}"))
    ) as client:
        created = await client.post(
            "/api/v1/handlers",
            headers=AUTH,
            json={"user_data": "booking-*", "url": "http://127.0.0.1:9/hook", "timeout": 3},
        )
        default = await client.post(
            "/api/v1/handlers", headers=AUTH, json={"default": True, "url": "http://127.0.0.1:9/"}
        )
        duplicate = await client.post(
            "/api/v1/handlers", headers=AUTH, json={"default": True, "url": "http://127.0.0.1:9/"}
        )
        handler_id = created.json()["id"]
        disabled = await client.post(f"/api/v1/handlers/{handler_id}/disable", headers=AUTH)
        listed = await client.get("/api/v1/handlers", headers=AUTH)
        removed = await client.delete(f"/api/v1/handlers/{handler_id}", headers=AUTH)
        again = await client.delete(f"/api/v1/handlers/{handler_id}", headers=AUTH)
        after = await client.get("/api/v1/handlers", headers=AUTH)
    assert created.status_code == 201
    assert created.json()["user_data"] == "booking-*"
    assert created.json()["timeout"] == 3
    assert created.json()["signed"] is False
    assert default.status_code == 201
    assert duplicate.status_code == 409
    assert duplicate.json() == {"error": "a default handler is already registered"}
    assert disabled.json()["enabled"] is False
    assert [h["user_data"] for h in listed.json()["items"]] == ["booking-*", None]
    assert removed.status_code == 204
    assert again.status_code == 404
    assert [h["default"] for h in after.json()["items"]] == [True]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"url": "http://x/"}, "give either a user_data value or default, not both or neither"),
        ({"user_data": "a", "default": True, "url": "http://x/"}, "give either a user_data"),
        ({"user_data": "a", "url": "ftp://x/"}, "url must be an http:// or https:// URL"),
        ({"user_data": "*", "url": "http://x/"}, "user_data must have at least one character"),
        ({"user_data": "a\x00", "url": "http://x/"}, "user_data must not contain a NUL"),
        ({"user_data": "a", "url": "http://x/\x00"}, "url must not contain a NUL"),
        ({"user_data": "a", "url": "http://x/", "secret": "plain"}, "a handler secret must be"),
        ({"user_data": "a", "url": "http://x/", "timeout": 0}, "timeout must be between"),
        ({"user_data": "a", "url": "http://x/", "colour": "red"}, "unknown field(s): colour"),
        ([1, 2], "body must be a JSON object"),
    ],
)
async def test_a_bad_handler_is_refused_with_the_reason(
    body: object, error: str, make_settings: SettingsFactory
) -> None:
    async with running(create_app(make_settings(admin_tokens=TOKEN))) as client:
        response = await client.post("/api/v1/handlers", headers=AUTH, json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)


def test_the_cli_adds_and_lists_handlers(database_url: str) -> None:
    env = {**os.environ, "RECEIVER_DATABASE_URL": database_url, "RECEIVER_LOG_FORMAT": "json"}

    def receiver(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "receiver", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    added = receiver(
        "handlers", "add", "--user-data", "42", "--url", "http://127.0.0.1:9/h", "--generate-secret"
    )
    assert added.returncode == 0, added.stderr
    handler = json.loads(added.stdout.splitlines()[0])
    assert (handler["user_data"], handler["signed"]) == ("42", True)
    assert "secret (shown once, give it to the handler): whsec_" in added.stdout
    duplicate = receiver("handlers", "add", "--user-data", "42", "--url", "http://127.0.0.1:9/h")
    assert duplicate.returncode == 2
    assert "a handler for '42' is already registered" in duplicate.stderr
    assert receiver("handlers", "disable", str(handler["id"])).returncode == 0
    listed = receiver("handlers", "list", "--json")
    assert [json.loads(line)["enabled"] for line in listed.stdout.splitlines()] == [False]
    table = receiver("handlers", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["id", "name", "user_data"]
    assert "http://127.0.0.1:9/h" in table[1]
    assert receiver("handlers", "remove", str(handler["id"])).returncode == 0
    assert receiver("handlers", "list", "--json").stdout == ""
    empty = receiver("handlers", "list")
    assert (empty.stdout, empty.stderr) == ("", "no handler\n")
    news = receiver(
        "handlers",
        "add",
        "--user-data",
        "b-*",
        "--url",
        "http://127.0.0.1:9/s",
        "--events",
        "replies,status",
        "--status-filter",
        "terminal",
    )
    assert news.returncode == 0, news.stderr
    added_news = json.loads(news.stdout.splitlines()[0])
    assert (added_news["events"], added_news["status_filter"]) == (
        ["replies", "status"],
        "terminal",
    )
    refused = receiver(
        "handlers",
        "add",
        "--user-data",
        "c",
        "--url",
        "http://127.0.0.1:9/s",
        "--status-filter",
        "terminal",
    )
    assert refused.returncode == 2
    assert "status_filter needs the status events" in refused.stderr


@pytest.mark.parametrize("handler_id", ["¹", "٣", "1e3", "-1", "99999999999999999999"])
async def test_a_handler_id_that_is_not_one_is_a_404(
    make_settings: SettingsFactory, handler_id: str
) -> None:
    # "¹".isdigit() is true and int("¹") fails: found by schemathesis (a 500 then).
    async with running(create_app(make_settings(admin_tokens=TOKEN))) as client:
        for method, path in (
            ("POST", f"/api/v1/handlers/{handler_id}/enable"),
            ("POST", f"/api/v1/handlers/{handler_id}/disable"),
            ("DELETE", f"/api/v1/handlers/{handler_id}"),
        ):
            response = await client.request(method, path, headers=AUTH)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json() == {"error": "no such handler"}


_URL = "http://127.0.0.1:9/replies"
_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        ({"user_data": "booking", "url": _URL}, True),
        ({"user_data": "promo-*", "url": "https://sms.internal/in", "timeout": 2.5}, True),
        ({"default": True, "url": _URL}, True),
        ({"user_data": "x", "default": False, "url": _URL, "secret": None}, True),
        ({"user_data": "x", "url": _URL, "secret": _SECRET}, True),
        ({"url": _URL}, False),
        ({"user_data": "x", "default": True, "url": _URL}, False),
        ({"default": False, "url": _URL}, False),
        ({"user_data": "**", "url": _URL}, False),
        ({"user_data": "a\x00b", "url": _URL}, False),
        ({"user_data": "x", "url": "ftp://sms.internal/in"}, False),
        ({"user_data": "x", "url": "http://"}, False),
        ({"user_data": "x", "url": "http://sms internal/in"}, False),
        ({"user_data": "x", "url": "https://\u00fc\u00f5\x13\x81"}, False),
        ({"user_data": "x", "url": "http://b\u00fccher.example/in"}, True),
        ({"user_data": "x", "url": _URL, "secret": "whsec_c2hvcnQ="}, False),
        ({"user_data": "x", "url": _URL, "timeout": 0}, False),
        ({"user_data": "x", "url": _URL, "timeout": 301}, False),
        ({"user_data": "x", "url": _URL, "colour": "red"}, False),
        ({"user_data": "x", "url": _URL, "events": ["replies", "status"]}, True),
        ({"user_data": "x", "url": _URL, "events": ["status"], "status_filter": "terminal"}, True),
        ({"user_data": "x", "url": _URL, "events": []}, False),
        ({"user_data": "x", "url": _URL, "events": ["bounces"]}, False),
        ({"user_data": "x", "url": _URL, "events": ["status"], "status_filter": "some"}, False),
    ],
)
async def test_the_description_of_a_new_handler_accepts_what_the_api_accepts(
    body: dict[str, Any], accepted: bool, make_settings: SettingsFactory
) -> None:
    # Client generators and contract testers build requests from the description.
    async with running(create_app(make_settings(admin_tokens=TOKEN))) as client:
        description = (await client.get("/api/v1/openapi.json", headers=AUTH)).json()
        response = await client.post("/api/v1/handlers", headers=AUTH, json=body)
    schema = description["components"]["schemas"]["NewHandler"]
    assert jsonschema.Draft202012Validator(schema).is_valid(body) is accepted
    assert response.status_code == (201 if accepted else 400), response.json()


async def test_a_method_the_handlers_route_does_not_take_is_told_the_ones_it_does(
    make_settings: SettingsFactory,
) -> None:
    async with running(create_app(make_settings(admin_tokens=TOKEN))) as client:
        response = await client.request("PUT", "/api/v1/handlers", headers=AUTH, json={})
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


async def test_a_handler_url_with_a_port_out_of_range_is_refused(
    make_settings: SettingsFactory,
) -> None:
    async with running(create_app(make_settings(admin_tokens=TOKEN))) as client:
        response = await client.post(
            "/api/v1/handlers", headers=AUTH, json={"default": True, "url": "http://h:99999/"}
        )
    assert response.status_code == 400
    assert response.json() == {"error": "url has a port that is not 0 to 65535: 'http://h:99999/'"}


READ_TOKEN = "read-token-for-tests"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/handlers", {"default": True, "url": "http://127.0.0.1:9/"}),
        ("DELETE", "/api/v1/handlers/{id}", None),
        ("POST", "/api/v1/handlers/{id}/disable", None),
        ("POST", "/api/v1/handlers/{id}/enable", None),
        ("POST", "/api/v1/forwards/1/retry", None),
    ],
)
async def test_a_read_token_reads_but_may_not_change(
    method: str, path: str, body: Any, make_settings: SettingsFactory
) -> None:
    settings = make_settings(api_tokens=READ_TOKEN, admin_tokens=TOKEN)
    reader = {"authorization": f"Bearer {READ_TOKEN}"}
    async with running(create_app(settings)) as client:
        created = await client.post(
            "/api/v1/handlers", headers=AUTH, json={"user_data": "x", "url": "http://127.0.0.1:9/"}
        )
        assert created.status_code == 201
        refused = await client.request(
            method, path.format(id=created.json()["id"]), headers=reader, json=body
        )
        listed = await client.get("/api/v1/handlers", headers=reader)
    assert refused.status_code == 403
    assert "admin token" in refused.json()["error"]
    # Nothing changed: the one handler is there, enabled.
    assert [(h["user_data"], h["enabled"]) for h in listed.json()["items"]] == [("x", True)]


async def test_an_admin_token_reads_too(make_settings: SettingsFactory) -> None:
    settings = make_settings(api_tokens=READ_TOKEN, admin_tokens=TOKEN)
    async with running(create_app(settings)) as client:
        messages = await client.get("/api/v1/messages", headers=AUTH)
        status = await client.get("/api/v1/status", headers=AUTH)
    assert messages.status_code == 200
    assert status.status_code == 200


async def test_retry_answers_404_for_no_such_forward(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings(admin_tokens=TOKEN))) as client:
        missing = await client.post("/api/v1/forwards/12345/retry", headers=AUTH)
        nonsense = await client.post("/api/v1/forwards/abc/retry", headers=AUTH)
    assert missing.status_code == 404
    assert nonsense.status_code == 404


async def test_a_handler_urls_query_values_are_hidden_from_read_tokens(
    make_settings: SettingsFactory,
) -> None:
    reader = "handlers-read-token-0123456"
    settings = make_settings(admin_tokens=TOKEN, api_tokens=reader, dispatcher=False)
    url = "http://127.0.0.1:9/hook?password=hunter2-xyz&api_key=k3y-0123&flag"
    async with running(create_app(settings)) as client:
        made = await client.post(
            "/api/v1/handlers", headers=AUTH, json={"user_data": "q", "url": url}
        )
        assert made.status_code == 201, made.text
        as_reader = await client.get(
            "/api/v1/handlers", headers={"authorization": f"Bearer {reader}"}
        )
        as_admin = await client.get("/api/v1/handlers", headers=AUTH)
        await console_sign_in(client, reader)
        page = await client.get("/console/handlers")
    for shown in (as_reader.text, page.text):
        assert "hunter2" not in shown
        assert "k3y-0123" not in shown
    (listed,) = as_reader.json()["items"]
    assert listed["url"] == "http://127.0.0.1:9/hook?password=***&api_key=***&flag"
    assert as_admin.json()["items"][0]["url"] == url


async def test_a_handler_is_named_and_shown_by_its_name(make_settings: SettingsFactory) -> None:
    async with running(
        create_app(make_settings(admin_tokens=TOKEN, api_tokens="read-token-for-names-0123"))
    ) as client:
        named = await client.post(
            "/api/v1/handlers",
            headers=AUTH,
            json={"user_data": "billing-*", "url": "http://127.0.0.1:9/b", "name": "Billing"},
        )
        same = await client.post(
            "/api/v1/handlers",
            headers=AUTH,
            json={"user_data": "other", "url": "http://127.0.0.1:9/o", "name": "billing"},
        )
        bad = [
            await client.post(
                "/api/v1/handlers",
                headers=AUTH,
                json={"user_data": f"bad-{n}", "url": "http://127.0.0.1:9/x", "name": name},
            )
            for n, name in enumerate(["#2", " padded", "", "x" * 65, "tab\there"])
        ]
        unnamed = await client.post(
            "/api/v1/handlers", headers=AUTH, json={"default": True, "url": "http://127.0.0.1:9/d"}
        )
        handler_id = named.json()["id"]
        renamed = await client.patch(
            f"/api/v1/handlers/{handler_id}", headers=AUTH, json={"name": "Billing replies"}
        )
        taken = await client.patch(
            f"/api/v1/handlers/{unnamed.json()['id']}",
            headers=AUTH,
            json={"name": "BILLING REPLIES"},
        )
        await console_sign_in(client, TOKEN)
        page = await client.get("/console/handlers")
        forwards = await client.get("/console/forwards")
        cleared = await client.patch(
            f"/api/v1/handlers/{handler_id}", headers=AUTH, json={"name": None}
        )
    assert named.status_code == 201, named.text
    assert named.json()["name"] == "Billing"
    assert same.status_code == 409
    assert same.json()["error"] == "a handler named 'billing' is already registered"
    for answer in bad:
        assert answer.status_code == 400, answer.text
    assert unnamed.json()["name"] is None
    assert renamed.json()["name"] == "Billing replies"
    assert taken.status_code == 409
    assert "<strong>Billing replies</strong>" in page.text
    assert f"#{unnamed.json()['id']}" in page.text
    assert "Billing replies (billing-*)" in forwards.text
    assert cleared.json()["name"] is None
