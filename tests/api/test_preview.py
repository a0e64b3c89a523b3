"""`POST /api/v1/sms/preview`: parts and encoding of a text, for any token, nothing sent."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.app import create_app
from tests.conftest import SettingsFactory
from tests.support import running

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
    }
    assert answer.headers["cache-control"] == "no-store"
    assert refused.status_code == 401


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"text": ""}, "text"),
        ({"text": "x" * 3201}, "text"),
        ({"text": 42}, "text"),
        ({}, "text"),
        ({"text": "hi", "encoding": "latin1"}, "encoding"),
        ({"text": "hi", "to": "+33612345678"}, "to"),
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
