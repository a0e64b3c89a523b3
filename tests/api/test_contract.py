"""The API's contract is written once: the models, which the description is generated from
and every answer goes through."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import ValidationError
from starlette.routing import Route

from receiver.api import models
from receiver.api.auth import Tokens
from receiver.api.openapi import ApiRoute, Operation, describe
from receiver.api.routes import api_routes
from receiver.app import create_app
from receiver.status import Status
from testkit.support import running
from tests.conftest import SettingsFactory

ROUTES = api_routes(Tokens(readers=["r" * 20]))
DESCRIPTION: dict[str, Any] = describe(ROUTES)  # read as JSON
OPERATIONS = [
    (route.described_path, op)
    for route in ROUTES
    if isinstance(route, ApiRoute)
    for op in route.operations
]


def test_every_route_is_described_and_every_description_is_a_route() -> None:
    served = {
        (method.lower(), re.sub(r":\w+\}", "}", route.path))
        for route in ROUTES
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    } - {("get", "/api/v1/openapi.json")}
    described = {
        (method, path) for path, operations in DESCRIPTION["paths"].items() for method in operations
    }
    assert served == described
    assert all(isinstance(r, ApiRoute) for r in ROUTES[:-1])
    assert isinstance(ROUTES[-1], Route)
    assert ROUTES[-1].path == "/api/v1/openapi.json"


@pytest.mark.parametrize(("path", "op"), OPERATIONS, ids=[f"{o.method} {p}" for p, o in OPERATIONS])
async def test_a_read_token_is_refused_where_the_description_says_403(
    path: str, op: Operation, make_settings: SettingsFactory
) -> None:
    settings = make_settings(
        api_tokens="read-token-for-tests", admin_tokens="admin-token-for-the-tests"
    )
    async with running(create_app(settings)) as client:
        answer = await client.request(
            op.method,
            re.sub(r"\{\w+\}", "1", path),
            headers={"authorization": "Bearer read-token-for-tests"},
        )
    declared = DESCRIPTION["paths"][path][op.method]["responses"]
    assert (answer.status_code == 403) is ("403" in declared), answer.text


GETS = [path for path, op in OPERATIONS if op.method == "get"]


@pytest.mark.parametrize("path", GETS)
async def test_every_get_answers_head_as_get_does(
    path: str, make_settings: SettingsFactory
) -> None:
    settings = make_settings(api_tokens="read-token-for-tests")
    reader = {"authorization": "Bearer read-token-for-tests"}
    async with running(create_app(settings)) as client:
        url = re.sub(r"\{\w+\}", "1", path)
        got, head = await client.get(url, headers=reader), await client.head(url, headers=reader)
    assert head.status_code == got.status_code
    assert head.content == b""


def test_the_description_is_valid_openapi_3_1() -> None:
    # Every schema, default and reference as an OpenAPI 3.1 validator reads them: an
    # optional field's constraints sit beside its null, never over it.
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in OpenAPIV31SpecValidator(DESCRIPTION).iter_errors()
    ]
    assert errors == []


def test_each_query_parameter_is_a_field_of_the_route_s_query_model() -> None:
    for path, op in OPERATIONS:
        if op.query is None:
            continue
        described = DESCRIPTION["paths"][path][op.method]["parameters"]
        names = {p["name"] for p in described if p["in"] == "query"}
        assert names == models.allowed(op.query), path
    assert "from" in models.allowed(models.MessagesQuery)


def test_an_answer_with_a_field_the_contract_lacks_is_refused() -> None:
    status = {
        "projection": {
            "pending": 0,
            "lag_seconds": 0.0,
            "oldest_pending_received_at": None,
            "last_batch_at": None,
            "stalled": False,
            "stalled_since": None,
        },
        "handlers": {"failing": [], "disabled": []},
        "webhooks": {
            "silent": False,
            "silent_since": None,
            "last_report_at": None,
            "unreported_sends": 0,
        },
        "read_replica": None,
        "schema": "0018",
        "schema_head": "0018",
        "schema_compatible": True,
        "version": "0.1.0",
    }
    assert models.answer(models.ServiceStatus, status).status_code == 200
    with pytest.raises(ValidationError):
        models.answer(models.ServiceStatus, {**status, "undeclared": 1})
    with pytest.raises(ValidationError):
        models.answer(models.ServiceStatus, {**status, "version": None})


def test_an_answer_keeps_its_names_and_times() -> None:
    at = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    step = {"before": "sent", "after": "delivered", "at": at, "derived": False, "event_id": "e"}
    answer = models.answer(models.HistoryStep, step)
    assert answer.body == (
        b'{"before":"sent","after":"delivered","at":"2026-12-05T09:00:00+00:00",'
        b'"derived":false,"event_id":"e","reported_at":null}'
    )
    assert models.HistoryStep.model_validate(step).after is Status.DELIVERED


def test_the_description_s_enums_are_the_code_s() -> None:
    schemas = DESCRIPTION["components"]["schemas"]
    assert schemas["Status"]["enum"] == [status.value for status in Status]
    assert set(schemas["SendState"]["enum"]) == {
        "queued",
        "submitted",
        "accepted",
        "rejected",
        "unknown",
    }
    assert schemas["Send"]["properties"]["from"]
    assert "from_" not in str(DESCRIPTION)
