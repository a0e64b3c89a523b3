"""`POST /api/v1/sms/preview`: parts and encoding of a text, for any token, nothing sent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from receiver.app import create_app
from testkit.fake_callr import fake_callr, rpc_error
from testkit.support import running
from tests.conftest import SettingsFactory

READ = "preview-read-token-0123"


async def test_any_token_previews_a_text(make_settings: SettingsFactory) -> None:
    async with running(create_app(make_settings(api_tokens=READ))) as client:
        answer = await client.post(
            "/api/v1/sms/preview",
            headers={"authorization": f"Bearer {READ}"},
            json={"text": "Votre code : 4821 ç€"},
        )
        refused = await client.post("/api/v1/sms/preview", json={"text": "hello"})
    assert answer.status_code == 200
    assert answer.json() == {
        "parts": 1,
        "encoding": "unicode",
        "characters": 20,
        "units": 20,
        "unit": "UTF-16 code units",
        "forced_unicode_by": ["ç"],
        "replaced": [],
        "stop_number_length": None,
        "stop_number_assumed": False,
        "quote": None,
    }
    assert answer.headers["cache-control"] == "no-store"
    assert refused.status_code == 401


# 155 characters before the STOP mention: with %STOPNUM% as written (9 characters)
# the text takes 164 septets, two parts; as the 5-digit number CALLR puts in its place
# with a custom sender, 160: one part.
_STOP_TEXT = "a" * 146 + " STOP au %STOPNUM%"


@pytest.mark.parametrize(
    ("sender", "stop_number", "parts", "length", "assumed"),
    [
        (None, None, 2, None, False),  # no sender: CALLR leaves %STOPNUM% as it is
        ("ACME", None, 1, 5, True),  # the assumed 5 digits
        ("ACME", "36173", 1, 5, False),
        ("ACME", "+33612345678", 2, 12, False),  # a long STOP number: 167 septets
    ],
)
async def test_stopnum_counts_as_the_stop_number_callr_puts_in_its_place(
    make_settings: SettingsFactory,
    sender: str | None,
    stop_number: str | None,
    parts: int,
    length: int | None,
    assumed: bool,
) -> None:
    assert len(_STOP_TEXT) == 164
    settings = make_settings(api_tokens=READ, callr_stop_number=stop_number)
    body = {"text": _STOP_TEXT} | ({"from": sender} if sender else {})
    async with running(create_app(settings)) as client:
        answer = await client.post(
            "/api/v1/sms/preview", headers={"authorization": f"Bearer {READ}"}, json=body
        )
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["parts"], found["stop_number_length"], found["stop_number_assumed"]) == (
        parts,
        length,
        assumed,
    )


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"text": ""}, "text"),
        ({"text": "x" * 3201}, "text"),
        ({"text": 42}, "text"),
        ({}, "text"),
        ({"text": "hi", "encoding": "latin1"}, "encoding"),
        ({"text": "hi", "to": "0612345678"}, "to"),
        ({"text": "hi", "cc": "+33612345678"}, "cc"),
        ({"text": "hi", "from": "A" * 12}, "from"),
        (["hi"], None),
    ],
)
async def test_a_bad_preview_is_a_400_naming_the_field(
    make_settings: SettingsFactory, body: Any, parameter: str | None
) -> None:
    async with running(create_app(make_settings(api_tokens=READ))) as client:
        answer = await client.post(
            "/api/v1/sms/preview", headers={"authorization": f"Bearer {READ}"}, json=body
        )
    assert answer.status_code == 400
    assert answer.json()["parameter"] == parameter


async def test_a_quote_is_callrs_own_count_at_the_shared_rate(
    make_settings: SettingsFactory,
) -> None:
    async with fake_callr() as callr:
        # No sender: its fetch of CALLR's GSM table would take the answer forced below.
        settings = make_settings(api_tokens=READ, sender=False, **callr.settings())
        body = {"text": "Offre «spéciale» " + "x" * 150, "to": "+33612345678", "encoding": "gsm"}
        async with running(create_app(settings)) as client:
            quoted = await client.post(
                "/api/v1/sms/preview?quote=true",
                headers={"authorization": f"Bearer {READ}"},
                json=body,
            )
            plain = await client.post(
                "/api/v1/sms/preview", headers={"authorization": f"Bearer {READ}"}, json=body
            )
            no_to = await client.post(
                "/api/v1/sms/preview?quote=true",
                headers={"authorization": f"Bearer {READ}"},
                json={"text": "hi"},
            )
            callr.forced.append(rpc_error(22, "INVALID_PHONE_NUMBER"))
            refused = await client.post(
                "/api/v1/sms/preview?quote=true",
                headers={"authorization": f"Bearer {READ}"},
                json=body,
            )
        quotes = [json.loads(a.body) for a in callr.asked if b"sms.get_quote" in a.body]
    assert quoted.status_code == 200, quoted.text
    assert quoted.json()["quote"] == {
        "parts": 2,
        "encoding": "gsm",
        "cost": "0.090",
        "source": "callr",
    }
    assert quoted.json()["parts"] == 2  # the receiver's own count, beside CALLR's
    assert plain.json()["quote"] is None
    assert quotes[0]["params"] == [body["to"], body["text"], {"force_encoding": "GSM"}]
    assert (no_to.status_code, no_to.json()["parameter"]) == (400, "to")
    assert refused.status_code == 502
    assert "INVALID_PHONE_NUMBER" in refused.json()["error"]
    assert not callr.created  # nothing sent


async def test_a_quote_without_the_callr_login_says_what_to_set(
    make_settings: SettingsFactory,
) -> None:
    async with running(create_app(make_settings(api_tokens=READ))) as client:
        answer = await client.post(
            "/api/v1/sms/preview?quote=true",
            headers={"authorization": f"Bearer {READ}"},
            json={"text": "hi", "to": "+33612345678"},
        )
        bad = await client.post(
            "/api/v1/sms/preview?quote=yes",
            headers={"authorization": f"Bearer {READ}"},
            json={"text": "hi"},
        )
    assert (answer.status_code, answer.json()["parameter"]) == (400, "quote")
    assert "RECEIVER_CALLR_API_LOGIN" in answer.json()["error"]
    assert (bad.status_code, bad.json()["parameter"]) == (400, "quote")
