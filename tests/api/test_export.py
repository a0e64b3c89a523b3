"""`GET /api/v1/messages/export`: every SMS the search chooses, as CSV or NDJSON; the
rows are the search's, in its order, whatever the filters."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from receiver.api.export import COLUMNS
from receiver.app import create_app
from receiver.status import Status
from testkit.callr_events import BASE_TIME, lifecycle, mo_event, mt_event, v2_event
from testkit.support import running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

TOKEN = "dashboards-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"
C, S, D, F = Status.CREATED, Status.SENT, Status.DELIVERED, Status.FAILED
# Texts a CSV must quote: separators, quotes, line ends of every kind, and none.
TEXTS = [
    'He said "yes", then no',
    "line one\nline two",
    "carriage\r\nreturn",
    "semi;colon, comma",
    "",
    "plain",
    "émoji 🎉 and ünïcode",
]


@pytest.fixture
async def client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(make_settings(api_tokens=TOKEN, dispatcher=False))) as client:
        for n in range(24):
            steps = lifecycle(C, S, D if n % 3 else F, start=BASE_TIME + timedelta(minutes=n))
            body = v2_event(f"x-{n}", f"xprt{n:04d}", steps)
            document = json.loads(body)
            document["payload"]["body"]["text"] = TEXTS[n % len(TEXTS)]
            document["payload"]["cost"] = "7.80"
            document["payload"]["network"] = "20810" if n % 4 == 0 else "20801"
            await _send(client, json.dumps(document).encode())
        for n in range(6):
            at = BASE_TIME + timedelta(minutes=30 + n)
            await _send(client, mt_event(f"v1-{n}", f"V1SMS{n:03d}", to=f"+3361111{n:04d}", at=at))
            reply = json.loads(
                mo_event(f"mo-{n}", f"MOSMS{n:03d}", sender=f"+3361111{n:04d}", at=at)
            )
            reply["data"]["text"] = f"reply, {n}"
            await _send(client, json.dumps(reply).encode())
        await until_projected(client)
        yield client


async def _send(client: httpx.AsyncClient, body: bytes) -> None:
    answer = await client.post(WEBHOOK, content=body)
    assert answer.status_code == 200, answer.text


async def searched(client: httpx.AsyncClient, params: list[tuple[str, str]]) -> list[Any]:
    """Every message of the search, page after page."""
    items: list[Any] = []
    cursor = None
    while True:
        page_params: list[tuple[str, str | int | float | bool | None]] = [
            *params,
            ("limit", "7"),
            *([("cursor", cursor)] if cursor else []),
        ]
        answer = await client.get("/api/v1/messages", params=page_params, headers=AUTH)
        assert answer.status_code == 200, answer.text
        items += answer.json()["items"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return items


async def exported(
    client: httpx.AsyncClient, params: list[tuple[str, str]], form: str = "csv"
) -> tuple[httpx.Response, list[dict[str, str]]]:
    answer = await client.get(
        "/api/v1/messages/export", params=[*params, ("format", form)], headers=AUTH
    )
    assert answer.status_code == 200, answer.text
    if form == "csv":
        reader = csv.reader(io.StringIO(answer.text, newline=""))
        header = next(reader)
        assert tuple(header) == COLUMNS
        return answer, [dict(zip(header, row, strict=True)) for row in reader]
    return answer, [json.loads(line) for line in answer.text.splitlines()]


FILTERS: list[list[tuple[str, str]]] = [
    [],
    [("direction", "inbound")],
    [("direction", "outbound"), ("status", "failed")],
    [("status", "delivered"), ("status", "failed")],
    [("user_data", "42")],
    [("number", "+3361111")],
    [("to", "+33611110003")],
    [("since", (BASE_TIME + timedelta(minutes=10)).isoformat())],
    [("until", (BASE_TIME + timedelta(minutes=10)).isoformat()), ("direction", "outbound")],
    [("network", "20801")],
]


@pytest.mark.parametrize("params", FILTERS, ids=lambda p: "&".join(f"{k}={v}" for k, v in p))
async def test_the_rows_are_the_search_s_in_its_order(
    client: httpx.AsyncClient, params: list[tuple[str, str]]
) -> None:
    items = await searched(client, params)
    # Each filter keeps some and leaves some out.
    assert len(items) > 0
    assert (len(items) == 36) is (params == [])
    for form in ("csv", "ndjson"):
        _, rows = await exported(client, params, form)
        assert [row["id"] for row in rows] == [item["id"] for item in items], form
    if params == []:
        assert len(items) == 36


async def test_each_field_as_the_api_gives_it(client: httpx.AsyncClient) -> None:
    items = {item["id"]: item for item in await searched(client, [])}
    _, csv_rows = await exported(client, [])
    answer, ndjson_rows = await exported(client, [], "ndjson")
    assert answer.headers["content-type"] == "application/x-ndjson"
    for as_csv, as_json in zip(csv_rows, ndjson_rows, strict=True):
        item = items[as_json["id"]]
        for name in ("direction", "from", "to", "user_data", "status", "network", "text"):
            assert as_json[name] == item[name], name
            assert as_csv[name] == (item[name] or ""), name
        for name in ("status_at", "created_at", "sent_at", "delivered_at"):
            assert as_json[name] == item[name], name
            assert as_csv[name] == (item[name] or ""), name
        assert as_json["parts"] == item["parts"]
        assert as_json["encoding"] == item["encoding"]
        if item["cost_cents"] is not None:
            assert (as_json["cost"], as_json["cost_unit"]) == (item["cost_cents"], "cents")
        elif item["cost"] is not None:
            assert (as_json["cost"], as_json["cost_unit"]) == (item["cost"], "b_customer_debit")
        else:
            assert (as_csv["cost"], as_csv["cost_unit"]) == ("", "")
    # Every awkward text comes back whole from a CSV reader.
    texts = {row["text"] for row in csv_rows}
    assert set(TEXTS) <= texts
    assert {"cents", "b_customer_debit"} <= {row["cost_unit"] for row in csv_rows}


async def test_an_empty_result_is_the_header_alone(client: httpx.AsyncClient) -> None:
    answer, rows = await exported(client, [("user_data", "nobody-has-this")])
    assert rows == []
    assert answer.text == ",".join(COLUMNS) + "\r\n"
    answer, rows = await exported(client, [("user_data", "nobody-has-this")], "ndjson")
    assert answer.content == b""


async def test_the_file_is_named_and_typed(client: httpx.AsyncClient) -> None:
    answer, _ = await exported(client, [])
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="messages-')
    assert disposition.endswith('.csv"')


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"format": "xml"}, "format"),
        ({"limit": "10"}, "limit"),
        ({"cursor": "abc"}, "cursor"),
        ({"status": "lost"}, "status"),
        ({"number": "+33", "to": "+33612345678"}, "number"),
        ({"since": "yesterday"}, "since"),
    ],
)
async def test_a_wrong_parameter_is_named(
    client: httpx.AsyncClient, params: dict[str, str], parameter: str
) -> None:
    answer = await client.get("/api/v1/messages/export", params=params, headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert answer.json()["parameter"] == parameter


async def test_it_needs_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/messages/export")).status_code == 401
