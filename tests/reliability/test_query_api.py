"""The query API under generated and hostile requests: schemathesis over its OpenAPI description,
strings made for SQL injection in every filter, and requests without the right token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from receiver.simulate import Mix, Plan, Signer
from tests.reliability.conftest import SECRET, OwnPostgres, Receiver

pytestmark = pytest.mark.reliability

TOKEN = "reliability-api-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE messages; --",
    '" OR ""="',
    "1; SELECT pg_sleep(5)",
    "%' UNION SELECT event_id, body FROM events --",
    "\\x00",
    "$1",
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receiver, str]]:
    folder = tmp_path_factory.mktemp("api")
    postgres = OwnPostgres(folder / "own")
    receiver = Receiver(postgres.url, folder, RECEIVER_API_TOKENS=TOKEN)
    try:
        receiver.start()
        signer = Signer(SECRET)
        with httpx.Client(timeout=10) as client:
            for delivery in Plan(40, Mix(mo=0.5), seed=31).deliveries():
                body = orjson.dumps(delivery.document)
                client.post(receiver.webhook, content=body, headers=signer.headers(body))
        yield receiver, postgres.url
    finally:
        receiver.stop()
        postgres.close()


def test_generated_requests_get_answers_that_match_the_description(
    api: tuple[Receiver, str],
) -> None:
    """Every operation, with requests generated from its description: no 500, and every
    answer (status, content type, body) is one the description allows."""
    receiver, _ = api
    # Loaded here, not by schemathesis, so that its requests carry the token only
    # where the test says: its check that auth is not ignored must see a 401.
    description = httpx.get(f"{receiver.url}/api/v1/openapi.json", headers=AUTH).json()
    schema = schemathesis.openapi.from_dict(description)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 6
    for operation in operations:

        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=receiver.url,
                headers=AUTH,
                excluded_checks=[
                    # Whether the token is required is test_every_route_needs_the_token's
                    # job: this check cannot tell a token given here from its own.
                    schemathesis.checks.ignored_auth,
                    # A cursor is opaque and signed, and `since` must come before
                    # `until`: requests the description allows can still be refused,
                    # with the documented 400.
                    schemathesis.checks.positive_data_acceptance,
                ],
            )

        check()


def counts(url: str) -> dict[str, int]:
    async def read() -> dict[str, int]:
        conn = await asyncpg.connect(url)
        try:
            return {
                table: await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
                for table in ("events", "deliveries", "messages", "transitions", "forwards")
            }
        finally:
            await conn.close()

    return asyncio.run(read())


def routes(receiver: Receiver) -> list[tuple[str, list[str]]]:
    """Each GET route of the description, with its query parameters' names."""
    description = httpx.get(f"{receiver.url}/api/v1/openapi.json", headers=AUTH).json()
    found = []
    for path, operations in description["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        names = [p["name"] for p in get.get("parameters", []) if p["in"] == "query"]
        found.append((path, names))
    return found


def test_sql_in_every_filter_changes_nothing_and_leaks_nothing(api: tuple[Receiver, str]) -> None:
    receiver, url = api
    before = counts(url)
    with httpx.Client(base_url=receiver.url, headers=AUTH, timeout=30) as client:
        tried = 0
        for path, names in routes(receiver):
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            for injection in INJECTIONS:
                # In the path too.
                targets: list[tuple[str, dict[str, str]]] = (
                    [(re.sub(r"\{[^}]+\}", "x", path).replace("/x", "/" + injection), {})]
                    if "{" in path
                    else []
                )
                targets += [(concrete, {name: injection}) for name in names]
                for target, params in targets:
                    response = client.get(target, params=params)
                    tried += 1
                    assert response.status_code in (200, 400, 404), (target, params, response.text)
                    text = response.text.lower()
                    assert "syntax" not in text, text
                    assert "postgres" not in text, text
                    assert "traceback" not in text
                    if response.status_code != 200:
                        continue
                    if response.headers["content-type"].startswith("text/csv"):
                        # An export: its header row, and no SMS.
                        assert len(response.text.splitlines()) == 1, (target, params)
                    elif "items" in response.json():
                        assert response.json()["items"] == [], (target, params)
    assert counts(url) == before
    assert tried > 50
    print(f"injections: {tried} requests")


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer"])
def test_every_route_needs_the_token(api: tuple[Receiver, str], authorization: str | None) -> None:
    receiver, _ = api
    headers = {"authorization": authorization} if authorization else {}
    for path, _ in routes(receiver):
        response = httpx.get(receiver.url + re.sub(r"\{[^}]+\}", "x", path), headers=headers)
        # Past five wrong bearer tokens in a minute, the address waits (429) instead.
        throttled = authorization == "Bearer wrong-token" and response.status_code == 429
        assert response.status_code == 401 or throttled, (path, authorization, response.text)
        assert "error" in response.json()
