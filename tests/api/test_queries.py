from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from receiver.api.numbers import number_prefix
from receiver.app import create_app
from receiver.status import Status
from testkit.callr_events import BASE_TIME, lifecycle, mo_event, mt_event, v1_event, v2_event
from testkit.support import console_sign_in, example, running, until_projected, with_fields
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

TOKEN = "dashboards-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"
C, P, S, D, F = Status.CREATED, Status.PENDING, Status.SENT, Status.DELIVERED, Status.FAILED


@pytest.fixture
async def client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(make_settings(api_tokens=TOKEN, dispatcher=False))) as client:
        yield client


async def send(client: httpx.AsyncClient, *bodies: bytes) -> None:
    for body in bodies:
        response = await client.post(WEBHOOK, content=body)
        assert response.status_code in (200, 400), response.text
    await until_projected(client)


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


async def test_one_message_with_its_history_events_and_forwards(
    client: httpx.AsyncClient,
) -> None:
    body = example("v1-sms.mt.status_update")
    await send(client, body, with_fields(body, try_=1))
    message = await get(client, "/api/v1/messages/0LWLNVLH")
    assert message["id"] == "0lwlnvlh"
    assert (message["status"], message["provider_status"]) == ("remote-queued", "REMOTE_QUEUED")
    assert (message["from"], message["to"], message["user_data"]) == ("SMS", "+33612345678", "42")
    assert message["cost"] == "4.50"
    assert message["anomaly"] is False
    assert [(h["before"], h["after"], h["derived"]) for h in message["history"]] == [
        ("created", "pending", False),
        ("pending", "sent", False),
        ("sent", "remote-queued", False),
    ]
    (event,) = message["events"]
    assert event["event_id"] == "942214623649723405HGNSmlw2sOrjq"
    assert (event["tries"], event["state"]) == ([0, 1], "processed")
    assert message["forwards"] == []


async def test_an_unknown_message_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/messages/nothing", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "no message 'nothing'"}


async def test_lists_filter_and_page_without_skipping_or_repeating(
    client: httpx.AsyncClient,
) -> None:
    for n in range(25):
        steps = lifecycle(C, S, D if n % 3 else F, start=BASE_TIME + timedelta(minutes=n))
        await send(client, v2_event(f"l-{n}", f"list{n:04d}", steps))
    first = await get(client, "/api/v1/messages", limit=10)
    assert first["next_cursor"] is not None
    # Newer messages arrive while the dashboard pages: they belong before page one.
    for n in range(25, 30):
        steps = lifecycle(C, S, D, start=BASE_TIME + timedelta(hours=5, minutes=n))
        await send(client, v2_event(f"l-{n}", f"list{n:04d}", steps))
    second = await get(client, "/api/v1/messages", limit=10, cursor=first["next_cursor"])
    third = await get(client, "/api/v1/messages", limit=10, cursor=second["next_cursor"])
    assert third["next_cursor"] is None
    seen = [m["id"] for page in (first, second, third) for m in page["items"]]
    assert seen == [f"list{n:04d}" for n in reversed(range(25))]
    failed = await get(client, "/api/v1/messages", status="failed")
    assert {m["id"] for m in failed["items"]} == {f"list{n:04d}" for n in range(0, 25, 3)}
    both = await client.get(
        "/api/v1/messages", params=[("status", "failed"), ("status", "delivered")], headers=AUTH
    )
    assert len(both.json()["items"]) == 30
    inbound = await get(client, "/api/v1/messages", direction="inbound")
    assert inbound["items"] == []


async def test_events_keep_the_raw_body_and_every_delivery(client: httpx.AsyncClient) -> None:
    body = example("v2.sms.inbound.received")
    await send(client, body, with_fields(body, try_=2), b"\xff\xfe not utf-8")
    event = await get(client, "/api/v1/events/b7712a9c04f1e6d2203kQ8w1ZpLmN4R7")
    assert event["body"] == body.decode()
    assert base64.b64decode(event["body_base64"]) == body
    assert [d["try"] for d in event["deliveries"]] == [0, 2]
    assert all(d["conflict"] is False for d in event["deliveries"])
    invalid = await get(client, "/api/v1/events", state="invalid")
    (broken,) = invalid["items"]
    detail = await get(client, f"/api/v1/events/{broken['event_id']}")
    assert detail["body"] is None
    assert base64.b64decode(detail["body_base64"]) == b"\xff\xfe not utf-8"
    assert detail["reason"].startswith("body is not valid JSON")
    by_type = await get(client, "/api/v1/events", type="v2.sms.inbound.received")
    assert [e["event_id"] for e in by_type["items"]] == ["b7712a9c04f1e6d2203kQ8w1ZpLmN4R7"]


async def test_forwards_are_listed_by_state(client: httpx.AsyncClient) -> None:
    await send(client, mo_event("mo-q1", "MOQ00001", sender="+1", user_data="nobody"))
    listed = await get(client, "/api/v1/forwards", state="unrouted")
    assert [(f["event_id"], f["rule"]) for f in listed["items"]] == [("mo-q1", "unrouted")]
    assert (await get(client, "/api/v1/forwards", state="done"))["items"] == []


async def test_stats_count_statuses_rates_and_latency(client: httpx.AsyncClient) -> None:
    for n in range(4):  # delivered 1, 2, 3 and 4 s after being sent
        steps = lifecycle(C, S, D, start=BASE_TIME, gap=n + 1)
        await send(client, v1_event(f"st-{n}", f"stat{n:04d}", steps))
    await send(client, v2_event("st-f", "statfail", lifecycle(C, S, F, start=BASE_TIME)))
    await send(client, v2_event("st-p", "statpend", lifecycle(C, P, start=BASE_TIME)))
    await send(client, mo_event("st-mo", "STATMO01", sender="+2", at=BASE_TIME))
    window = {"since": BASE_TIME.isoformat(), "until": (BASE_TIME + timedelta(hours=1)).isoformat()}
    stats = await get(client, "/api/v1/stats", **window)
    outbound = stats["outbound"]
    assert outbound["total"] == 6
    assert outbound["by_status"]["delivered"] == 4
    assert outbound["by_status"]["failed"] == 1
    assert outbound["by_status"]["pending"] == 1
    assert outbound["delivery_rate"] == pytest.approx(4 / 5)
    assert outbound["latency_seconds"]["p50"] == pytest.approx(2.5)
    assert outbound["latency_seconds"]["p90"] == pytest.approx(3.7)
    assert stats["mo_received"] == 1
    # Forwards and deliveries count by when the receiver got them: today, not in March.
    assert stats["forwards"] == {}
    today = await get(client, "/api/v1/stats")
    assert today["forwards"] == {"unrouted": 1}
    assert today["deliveries"]["received"] == 7
    by_network = await get(client, "/api/v1/stats", group_by="network", **window)
    assert [(g["key"], g["total"]) for g in by_network["groups"]] == [("20801", 6)]


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/v1/messages", {"limit": "0"}, "limit"),
        ("/api/v1/messages", {"limit": "1001"}, "limit"),
        ("/api/v1/messages", {"since": "yesterday"}, "since"),
        ("/api/v1/messages", {"until": "2026-01-01T00:00:00"}, "until"),
        ("/api/v1/messages", {"status": "lost"}, "status"),
        ("/api/v1/messages", {"direction": "sideways"}, "direction"),
        ("/api/v1/messages", {"colour": "red"}, "colour"),
        ("/api/v1/messages", {"cursor": "not-a-cursor"}, "cursor"),
        # PostgreSQL's text cannot hold a NUL, nor its times one past the year 9999
        # in UTC, nor before the year 1: refused, not a server error.
        ("/api/v1/messages", {"network": "208\x0001"}, "network"),
        ("/api/v1/events", {"type": "sms.mo\x00"}, "type"),
        ("/api/v1/messages", {"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ("/api/v1/forwards", {"until": "9999-12-31T23:00:00-05:00"}, "until"),
        ("/api/v1/stats", {"until": "0001-01-01T00:30:00Z"}, "until"),
        ("/api/v1/events", {"state": "happy"}, "state"),
        ("/api/v1/forwards", {"handler": "-1"}, "handler"),
        ("/api/v1/stats", {"group_by": "colour"}, "group_by"),
        (
            "/api/v1/stats",
            {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            "since",
        ),
    ],
)
async def test_bad_parameters_are_400s_that_name_them(
    client: httpx.AsyncClient, path: str, params: dict[str, str], parameter: str
) -> None:
    response = await client.get(path, params=params, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter
    assert parameter in response.json()["error"] or "cursor" in response.json()["error"]


@pytest.mark.parametrize("path", ["/api/v1/messages/sms%00id", "/api/v1/events/event%00id"])
async def test_an_id_with_a_nul_is_not_found(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"].startswith("no ")


async def test_a_tampered_cursor_is_refused(client: httpx.AsyncClient) -> None:
    for n in range(3):
        await send(client, v2_event(f"t-{n}", f"tamp{n:04d}", lifecycle(C, S)))
    cursor = (await get(client, "/api/v1/messages", limit=1))["next_cursor"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-3] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    response = await client.get("/api/v1/messages", params={"cursor": tampered}, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {"error": "cursor is not one this API gave", "parameter": "cursor"}


async def test_the_openapi_description_covers_every_route(client: httpx.AsyncClient) -> None:
    description = await get(client, "/api/v1/openapi.json")
    assert description["openapi"] == "3.1.0"
    assert set(description["paths"]) >= {
        "/api/v1/messages",
        "/api/v1/messages/{sms_id}",
        "/api/v1/events",
        "/api/v1/events/{event_id}",
        "/api/v1/forwards",
        "/api/v1/stats",
        "/api/v1/handlers",
        "/api/v1/handlers/{handler_id}",
    }
    schemas = description["components"]["schemas"]
    text = json.dumps(description)
    for ref in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert ref in schemas, ref
    unauthenticated = await client.get("/api/v1/openapi.json")
    assert unauthenticated.status_code == 401


async def test_a_query_past_the_statement_timeout_is_a_503(
    make_settings: SettingsFactory, database_url: str
) -> None:
    settings = make_settings(api_tokens=TOKEN, dispatcher=False, api_statement_timeout=0.2)
    blocker = await asyncpg.connect(database_url)
    try:
        async with running(create_app(settings)) as client:
            # Another session holds the table: the dashboard query waits, then is cancelled.
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            started = asyncio.get_running_loop().time()
            response = await client.get("/api/v1/stats", headers=AUTH)
            waited = asyncio.get_running_loop().time() - started
            await transaction.rollback()
    finally:
        await blocker.close()
    assert response.status_code == 503
    assert response.json()["error"].startswith("the query took too long")
    assert waited < 2


@pytest.mark.parametrize(
    ("typed", "region", "start"),
    [
        ("06 12 34 00 01", "FR", "+33612340001"),  # a whole national number
        ("06123", "FR", "+336123"),  # its start
        ("+33 6 12", "FR", "+33612"),  # E.164 as it is
        ("07890 123456", "GB", "+447890123456"),
        ("(646) 982-0800", "US", "+16469820800"),  # no national prefix there
        ("0612340001", None, "+0612340001"),  # no region: digits taken as E.164
    ],
)
def test_a_number_is_read_as_people_of_the_region_write_it(
    typed: str, region: str | None, start: str
) -> None:
    assert number_prefix(typed, region)[0] == start


async def test_a_national_number_finds_its_sms_with_a_default_region(
    make_settings: SettingsFactory,
) -> None:
    body = mt_event("mt-national", "NATIONAL1", to="+33612340001")
    settings = make_settings(api_tokens=TOKEN, dispatcher=False, default_region="fr")
    async with running(create_app(settings)) as client:
        await client.post(WEBHOOK, content=body)
        await until_projected(client)
        found = await client.get("/api/v1/messages", params={"number": "0612340001"}, headers=AUTH)
        start = await client.get("/api/v1/messages", params={"number": "06 12"}, headers=AUTH)
        plain = await client.get("/api/v1/messages", headers=AUTH)
        await console_sign_in(client, TOKEN)
        page = await client.get("/console/messages", params={"q": "06 12 34 00 01"})
    assert [m["id"] for m in found.json()["items"]] == ["national1"]
    # The answer says how it read the number.
    assert found.json()["number_searched"] == "+33612340001"
    assert start.json()["number_searched"] == "+33612"
    assert [m["id"] for m in start.json()["items"]] == ["national1"]
    assert plain.json()["number_searched"] is None
    assert "Read as a number of FR: +33612340001." in page.text
    assert "national1" in page.text
