"""Sends as CALLR documents them, against a CALLR double that refuses what CALLR would.

Each test runs a real app (its sender included) against the double on loopback: v2's
fields where CALLR's reference lists them, the parts CALLR bills winning over the
receiver's estimate, a lost answer found whatever CALLR made of the text (its STOP
number, a forced GSM's conversion) and on whatever page of CALLR's list it is, and a
list that may have been cut never taken for proof that an SMS was not made.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import receiver.callr.api
from receiver.app import create_app
from receiver.sending.requests import REPLY_WARNING, STOP_LENGTH_WARNING, STOPNUM_WARNING
from testkit.fake_callr import API_KEY, STOP_NUMBER, FakeCallr
from testkit.support import running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.sending.test_sending import QUICK, READ, TO, bearer, post, until_state

# 146 + 9 characters, then the STOP number: 160 septets with a 5-digit number (one
# SMS), more with a longer one (two).
STOP_TEXT = "a" * 146 + " STOP au %STOPNUM%"


def settings_for(callr: FakeCallr, api: str) -> dict[str, Any]:
    return callr.settings() if api == "v1" else callr.v2_settings()


async def test_v2_sends_carry_their_fields_where_callrs_reference_lists_them(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    async with running(create_app(make_settings(**QUICK, **callr.v2_settings()))) as client:
        answer = await post(
            client,
            {
                "to": TO,
                "text": "Rappel : rendez-vous demain",
                "from": "ACME",
                "encoding": "unicode",
                "nature": "alerting",
            },
        )
        sent = await until_state(client, answer.json()["id"], "accepted", "rejected")
    assert sent["state"] == "accepted", sent
    asked = next(a for a in callr.asked if (a.method, a.path) == ("POST", "/v2.0/sms"))
    assert asked.query == {
        "to": TO,
        "from": "ACME",
        "encoding": "unicode",
        "trafficType": "alerting",
    }
    assert json.loads(asked.body) == {"text": "Rappel : rendez-vous demain"}
    made = callr.created[0]
    assert (made["from"], made["encoding"], made["nature"]) == ("ACME", "UNICODE", "ALERTING")


@pytest.mark.parametrize(
    ("query", "body"),
    [
        # What the client sent before: the sender and the encoding in the body.
        ({"to": TO}, {"text": "hi", "from": "ACME"}),
        ({"to": TO}, {"text": "hi", "encoding": "gsm"}),
        ({"to": TO, "nature": "alerting"}, {"text": "hi"}),
        ({"to": TO, "from": "ACME-TOO-LONG"}, {"text": "hi"}),
        ({"to": "0612345678"}, {"text": "hi"}),
        ({"to": TO}, {"text": ""}),
        ({"to": TO}, {"text": "x" * 3201}),
    ],
)
async def test_the_double_refuses_a_v2_send_callr_would_refuse(
    callr: FakeCallr, query: dict[str, str], body: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=callr.url) as client:
        answer = await client.post(
            "/v2.0/sms", params=query, json=body, headers={"x-api-key": API_KEY}
        )
    assert answer.status_code == 400, answer.text
    assert callr.created == []


@pytest.mark.parametrize(
    "params",
    [
        ["SMS", TO, "hi"],  # three parameters of four
        ["+33612345678", TO, "hi", None],  # a number as a v1 sender
        ["SMS", TO, "hi", {"force_encoding": "UTF8"}],
        ["SMS", TO, "hi", {"flash": True}],
        ["SMS", "33612345678", "hi", None],
    ],
)
async def test_the_double_refuses_an_sms_send_callr_would_refuse(
    callr: FakeCallr, params: list[Any]
) -> None:
    body = {"id": 1, "jsonrpc": "2.0", "method": "sms.send", "params": params}
    async with httpx.AsyncClient(base_url=callr.url, auth=(*_credentials(callr),)) as client:
        answer = await client.post("/json-rpc/v1.1/", json=body)
        no_version = await client.post(
            "/json-rpc/v1.1/", json={k: v for k, v in body.items() if k != "jsonrpc"}
        )
    assert "error" in answer.json(), answer.text
    assert no_version.json()["error"]["code"] == -32600
    assert callr.created == []


def _credentials(callr: FakeCallr) -> tuple[str, str]:
    settings = callr.settings()
    return settings["callr_api_login"], settings["callr_api_password"]


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_the_parts_callr_bills_replace_the_estimate(
    make_settings: SettingsFactory, callr: FakeCallr, api: str
) -> None:
    # The receiver counts %STOPNUM% as a 12-character STOP number (two parts); CALLR
    # puts its own 5-digit one in its place and bills one part. v2's answer says so at
    # once; v1's says it in its first report.
    settings = make_settings(**QUICK, **settings_for(callr, api), callr_stop_number="+33612345678")
    async with running(create_app(settings)) as client:
        answer = await post(client, {"to": TO, "text": STOP_TEXT, "from": "ACME"})
        queued = answer.json()
        sent = await until_state(client, queued["id"], "accepted")
        if api == "v1":
            await _report(client, callr.created[0])
            sent = (await client.get(f"/api/v1/sms/{queued['id']}", headers=bearer(READ))).json()
        record = (
            await client.get(f"/api/v1/messages/{sent['sms_id']}", headers=bearer(READ))
        ).json()
    assert (queued["parts"], queued["parts_from"], queued["estimated_parts"]) == (2, "estimate", 2)
    assert (callr.created[0]["parts"], callr.created[0]["text"][-5:]) == (1, STOP_NUMBER)
    assert (sent["parts"], sent["encoding"], sent["parts_from"]) == (1, "gsm", "callr")
    assert (sent["estimated_parts"], sent["estimated_encoding"]) == (2, "gsm")
    assert (record["parts"], record["encoding"]) == (1, "gsm")


async def _report(client: httpx.AsyncClient, sms: dict[str, Any]) -> None:
    """CALLR's v1 status report of `sms`, its SMS object as the double stored it."""
    now = datetime.now(UTC)
    at = now.strftime("%Y-%m-%d %H:%M:%S")
    data = {**sms, "status": "SENT", "date_update": at, "date_sent": at}
    event = {
        "event_id": f"report-{sms['hash']}",
        "event_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "hook_hash": "IAYHJ6F3",
        "try": 0,
        "type": "sms.mt.status_update",
        "data": data,
    }
    answer = await client.post(
        f"/webhooks/callr/{TEST_URL_TOKEN}", content=json.dumps(event).encode()
    )
    assert answer.status_code == 200, answer.text
    await until_projected(client)


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize(
    ("text", "sender", "encoding"),
    [
        ("Votre code : 4821", None, None),
        (STOP_TEXT, "ACME", None),  # CALLR stores its STOP number in the text
        ("Offre «spéciale» ê", None, "gsm"),  # CALLR stores the text converted to GSM
        ("Offre «spéciale» STOP %STOPNUM%", "ACME", "gsm"),
    ],
)
async def test_a_lost_answer_is_found_whatever_callr_made_of_the_text(
    make_settings: SettingsFactory,
    callr: FakeCallr,
    api: str,
    text: str,
    sender: str | None,
    encoding: str | None,
) -> None:
    callr.faults = ["drop"]  # the SMS made, the answer cut
    request = {"to": TO, "text": text, "user_data": "found-1"}
    request |= {"from": sender} if sender else {}
    request |= {"encoding": encoding} if encoding else {}
    async with running(create_app(make_settings(**QUICK, **settings_for(callr, api)))) as client:
        answer = await post(client, request)
        sent = await until_state(client, answer.json()["id"], "accepted", "unknown", "rejected")
    assert len(callr.created) == 1
    assert callr.created[0]["text"] != text or (sender, encoding) == (None, None)
    assert sent["state"] == "accepted", sent
    assert sent["sms_id"] == callr.created[0]["hash"].lower()


async def test_a_text_that_only_may_be_the_sends_is_doubt_never_a_second_sms(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    # CALLR converts « to << where the receiver's table says ", and its own table
    # (sms.get_gsm_charset_mapping) cannot be had: the SMS CALLR lists may be the
    # send's, or another. Neither found nor absent: unknown, left to an admin.
    callr.to_gsm = {"«": "<<", "»": ">>"}
    callr.serves_gsm_table = False
    callr.faults = ["drop"]
    async with running(create_app(make_settings(**QUICK, **callr.settings()))) as client:
        answer = await post(client, {"to": TO, "text": "Offre «spéciale»", "encoding": "gsm"})
        sent = await until_state(client, answer.json()["id"], "accepted", "unknown", "rejected")
    assert callr.created[0]["text"] == "Offre <<spéciale>>"
    assert sent["state"] == "unknown", sent
    assert "whose text may be this one's" in sent["reason"]
    assert len(callr.created) == 1


async def test_with_callrs_own_gsm_table_its_conversion_is_matched_exactly(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    # The same conversion, CALLR's table fetched at the sender's start: found.
    callr.to_gsm = {"«": "<<", "»": ">>"}
    callr.faults = ["drop"]
    async with running(create_app(make_settings(**QUICK, **callr.settings()))) as client:
        await _table_loaded(callr)
        answer = await post(client, {"to": TO, "text": "Offre «spéciale»", "encoding": "gsm"})
        preview = await client.post(
            "/api/v1/sms/preview", headers=bearer(READ), json={"text": "«»", "encoding": "gsm"}
        )
        sent = await until_state(client, answer.json()["id"], "accepted", "unknown", "rejected")
    assert sent["state"] == "accepted", sent
    assert sent["sms_id"] == callr.created[0]["hash"].lower()
    assert preview.json()["units"] == 4  # << and >>, as CALLR's table says


async def _table_loaded(callr: FakeCallr) -> None:
    async with asyncio.timeout(10):
        while not any(b"sms.get_gsm_charset_mapping" in a.body for a in callr.asked):  # noqa: ASYNC110 (the double records what it gets)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)


def _others(callr: FakeCallr, count: int) -> None:
    """`count` SMS to the same number, made by other means and sorted before the send's
    (the double lists the newest first): the send's SMS is on the last page."""
    for n in range(count):
        callr.made_elsewhere(f"OT{n:06d}", TO, f"other {n}", later=30)


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_a_lost_answer_is_looked_for_on_every_page(
    make_settings: SettingsFactory, callr: FakeCallr, api: str
) -> None:
    # 250 SMS to the number in the window, the send's sorted last: three pages of 100.
    _others(callr, 250)
    callr.faults = ["drop"]
    async with running(create_app(make_settings(**QUICK, **settings_for(callr, api)))) as client:
        answer = await post(client, {"to": TO, "text": "on the last page", "user_data": "p"})
        sent = await until_state(client, answer.json()["id"], "accepted", "unknown", "rejected")
    assert sent["state"] == "accepted", sent
    assert sent["sms_id"] == callr.created[0]["hash"].lower()
    searches = [
        a for a in callr.asked if a.path == "/json-rpc/v1.1/" and b"sms.search" in a.body
    ] + [a for a in callr.asked if (a.method, a.path) == ("GET", "/v2.0/sms")]
    assert len(searches) == 3  # pages of 100, 100 and 51
    assert len(callr.created) == 1


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize(("max_pages", "state", "made"), [(2, "unknown", 0), (50, "accepted", 1)])
async def test_a_list_that_may_be_cut_never_makes_a_send_absent(
    make_settings: SettingsFactory,
    callr: FakeCallr,
    monkeypatch: pytest.MonkeyPatch,
    api: str,
    max_pages: int,
    state: str,
    made: int,
) -> None:
    # The answer never came and CALLR made nothing. With CALLR's 250 SMS of the window
    # read whole (three pages), the send is absent and sent again; with two pages read
    # at most, the list may have been cut: unknown, never a second SMS by itself.
    monkeypatch.setattr(receiver.callr.api, "MAX_PAGES", max_pages)
    _others(callr, 250)
    callr.faults = ["hang_before"]
    callr.hang_seconds = 3.0  # past the client's 2 s: an answer lost, nothing made
    async with running(create_app(make_settings(**QUICK, **settings_for(callr, api)))) as client:
        answer = await post(client, {"to": TO, "text": "cut or whole", "user_data": "c"})
        sent = await until_state(client, answer.json()["id"], "accepted", "unknown", "rejected")
    assert sent["state"] == state, sent
    assert len(callr.created) == made
    if state == "unknown":
        assert "not whole" in sent["reason"]


@pytest.mark.parametrize(
    ("api", "sender", "accepted"),
    [
        ("v1", "+33612345678", False),  # CALLR's v1 sender: a short code or alphanumeric
        ("v1", "36100", True),
        ("v1", "ACME Corp", True),
        ("v1", "12345678901", False),  # digits alone, longer than a short code
        ("v2", "+3361234567", True),  # v2: a number of 11 characters at most
        ("v2", "+33612345678", False),
        ("v2", "ACME_Corp-1", True),
        ("v2", "ACME Corp 12", False),
    ],
)
async def test_senders_are_held_to_the_rules_of_the_api_that_sends(
    make_settings: SettingsFactory, callr: FakeCallr, api: str, sender: str, accepted: bool
) -> None:
    async with running(create_app(make_settings(**QUICK, **settings_for(callr, api)))) as client:
        answer = await post(client, {"to": TO, "text": "hi", "from": sender})
    if accepted:
        assert answer.status_code == 202, answer.text
    else:
        assert answer.status_code == 400, answer.text
        assert answer.json()["parameter"] == "from"
        assert api in answer.json()["error"]


@pytest.mark.parametrize(
    ("text", "sender", "warnings"),
    [
        ("hi", None, []),
        ("hi", "ACME", [REPLY_WARNING]),
        ("STOP %STOPNUM%", "ACME", [REPLY_WARNING, STOP_LENGTH_WARNING]),
        ("STOP %STOPNUM%", None, [STOPNUM_WARNING]),
    ],
)
async def test_the_202_warns_of_what_callr_takes_but_the_sender_may_not_want(
    make_settings: SettingsFactory,
    callr: FakeCallr,
    text: str,
    sender: str | None,
    warnings: list[str],
) -> None:
    body = {"to": TO, "text": text} | ({"from": sender} if sender else {})
    async with running(create_app(make_settings(**QUICK, **callr.settings()))) as client:
        answer = await post(client, body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["warnings"] == warnings
