"""The CALLR API client against the fake CALLR: answers, and every way a call can fail."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from receiver import metrics
from receiver.callr.api import CallrApi, CallrApiError, CallrNotFound
from receiver.status import Status
from testkit.callr_events import lifecycle, v1_event
from testkit.fake_callr import (
    API_KEY,
    JSON,
    LOGIN,
    PASSWORD,
    FakeCallr,
    Forced,
    fake_callr,
    rpc_error,
    sms_object,
)


@pytest.fixture
async def callr() -> AsyncIterator[FakeCallr]:
    async with fake_callr() as server:
        yield server


class Sleeps(list[float]):
    """Records the waits the client asks for, without waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(callr: FakeCallr, *, password: str = PASSWORD, **options: float | int) -> CallrApi:
    return CallrApi(
        callr.url,
        LOGIN,
        password,
        observe=metrics.count_callr_call,
        **{"rate": 100.0, "timeout": 2.0, **options},  # type: ignore[arg-type]
    )


def counted(method: str, outcome: str) -> float:
    value: float = metrics.CALLR_API.labels(method, outcome)._value.get()
    return value


@pytest.mark.parametrize("wrapped", [False, True])
async def test_one_sms_comes_back_with_callrs_bytes_bare_or_wrapped(
    callr: FakeCallr, wrapped: bool
) -> None:
    # CALLR's REST pages show the SMS object bare; its gateway has wrapped it in
    # {"status", "data"}: both are read, and the bytes kept are CALLR's, whole.
    callr.rest_wrapped = wrapped
    callr.add(sms_object(v1_event("e1", "ab12cd34", lifecycle(Status.CREATED, Status.SENT))))
    before = counted("GET /sms/<hash>", "ok")
    async with client(callr) as api:
        answer = await api.sms("ab12cd34")
    assert answer.value["hash"] == "AB12CD34"
    start = b'{"status":"success","data":{' if wrapped else b'{"type":"OUT","hash":"AB12CD34"'
    assert answer.raw.startswith(start)
    assert callr.asked[-1].path == "/rest/v1.1/sms/AB12CD34"
    assert counted("GET /sms/<hash>", "ok") == before + 1


@pytest.mark.parametrize("wrapped", [False, True])
async def test_an_unknown_sms_is_not_found(callr: FakeCallr, wrapped: bool) -> None:
    callr.rest_wrapped = wrapped
    async with client(callr) as api:
        with pytest.raises(CallrNotFound, match="HTTP 404"):
            await api.sms("zz99zz99")


async def test_a_refusal_of_one_sms_is_about_that_call(callr: FakeCallr) -> None:
    callr.forced.append(Forced(400, b'{"code": 12, "message": "bad hash"}', JSON))
    async with client(callr) as api:
        with pytest.raises(CallrApiError, match=r"HTTP 400\): bad hash \(code 12\)") as caught:
            await api.sms("ab12cd34")
    assert caught.value.about_the_call


async def test_bad_credentials_are_one_line_without_the_password(callr: FakeCallr) -> None:
    before = counted("GET /sms/<hash>", "unauthorized")
    async with client(callr, password="wrong-secret-value") as api:
        with pytest.raises(CallrApiError) as caught:
            await api.sms("ab12cd34")
    message = str(caught.value)
    assert "HTTP 401" in message
    assert "RECEIVER_CALLR_API_LOGIN" in message
    assert "wrong-secret-value" not in message
    assert "\n" not in message
    assert len(callr.asked) == 1  # not retried: it would fail the same way
    assert counted("GET /sms/<hash>", "unauthorized") == before + 1


async def test_429_waits_as_long_as_retry_after_says(callr: FakeCallr) -> None:
    callr.add(sms_object(v1_event("e1", "ab12cd34", lifecycle(Status.CREATED, Status.SENT))))
    callr.forced.append(Forced(429, b"slow down", {"retry-after": "3"}))
    sleeps = Sleeps()
    async with CallrApi(
        callr.url, LOGIN, PASSWORD, observe=metrics.count_callr_call, rate=100, sleep=sleeps
    ) as api:
        answer = await api.sms("ab12cd34")
    assert answer.value["hash"] == "AB12CD34"
    assert sleeps == [3.0]
    assert len(callr.asked) == 2


async def test_a_retry_after_beyond_the_longest_wait_is_an_error(callr: FakeCallr) -> None:
    callr.forced.append(Forced(503, b"", {"retry-after": "3600"}))
    async with CallrApi(
        callr.url, LOGIN, PASSWORD, observe=metrics.count_callr_call, rate=100, sleep=Sleeps()
    ) as api:
        with pytest.raises(CallrApiError, match="asks to wait 3600 s"):
            await api.sms("ab12cd34")


async def test_5xx_is_tried_again_with_backoff_then_given_up(callr: FakeCallr) -> None:
    callr.forced.extend(Forced(500, b"oops") for _ in range(5))
    sleeps = Sleeps()
    before = counted("GET /sms/<hash>", "server_error")
    async with CallrApi(
        callr.url,
        LOGIN,
        PASSWORD,
        observe=metrics.count_callr_call,
        rate=100,
        retries=4,
        sleep=sleeps,
    ) as api:
        with pytest.raises(CallrApiError, match=r"HTTP 500\); gave up after 5 tries"):
            await api.sms("ab12cd34")
    assert len(callr.asked) == 5
    assert len(sleeps) == 4
    assert sleeps == sorted(sleeps)  # growing waits
    assert counted("GET /sms/<hash>", "server_error") == before + 5


async def test_a_5xx_then_an_answer_is_an_answer(callr: FakeCallr) -> None:
    callr.add(sms_object(v1_event("e1", "ab12cd34", lifecycle(Status.CREATED, Status.SENT))))
    callr.forced.append(Forced(502, b"<html>bad gateway</html>"))
    async with CallrApi(
        callr.url, LOGIN, PASSWORD, observe=metrics.count_callr_call, rate=100, sleep=Sleeps()
    ) as api:
        assert (await api.sms("ab12cd34")).value["hash"] == "AB12CD34"


async def test_no_answer_in_time_is_a_timeout(callr: FakeCallr) -> None:
    callr.forced.extend(Forced(200, b"{}", delay=1.0) for _ in range(2))
    async with CallrApi(
        callr.url, LOGIN, PASSWORD, rate=100, timeout=0.2, retries=1, sleep=Sleeps()
    ) as api:
        with pytest.raises(
            CallrApiError, match=r"no answer from CALLR within 0\.2 s; gave up after 2 tries"
        ):
            await api.sms("ab12cd34")


async def test_html_instead_of_json_is_said(callr: FakeCallr) -> None:
    callr.forced.append(
        Forced(200, b"<html><body>Maintenance</body></html>", {"content-type": "text/html"})
    )
    async with client(callr) as api:
        with pytest.raises(CallrApiError, match=r"with text/html, not JSON .*Maintenance"):
            await api.sms("ab12cd34")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"status": "success", "data": "AB12CD34"}', "is not an SMS object"),
        (b'"AB12CD34"', "is not an SMS object"),
        (b"[1, 2]", "is not an SMS object"),
    ],
)
async def test_an_answer_of_the_wrong_shape_is_said(
    callr: FakeCallr, body: bytes, expected: str
) -> None:
    callr.forced.append(Forced(200, body, {"content-type": "application/json"}))
    async with client(callr) as api:
        with pytest.raises(CallrApiError, match=expected):
            await api.sms("ab12cd34")


async def test_a_search_page_must_be_a_list_of_objects(callr: FakeCallr) -> None:
    callr.forced.append(Forced(200, b'{"jsonrpc": "2.0", "id": 1, "result": {"hash": "X"}}'))
    async with client(callr) as api:
        with pytest.raises(CallrApiError, match="not a page of SMS objects"):
            await api.search("v1", "OUT", datetime(2026, 3, 2, tzinfo=UTC), datetime.now(UTC))


async def test_a_json_rpc_error_object_is_said_with_its_code(callr: FakeCallr) -> None:
    callr.forced.append(rpc_error(22, "Invalid endpoint"))
    before = counted("webhooks.subscribe", "error")
    async with client(callr) as api:
        with pytest.raises(
            CallrApiError, match=r"CALLR refused webhooks.subscribe: Invalid endpoint \(code 22\)"
        ):
            await api.subscribe("sms.mo", "ftp://nowhere", None)
    assert counted("webhooks.subscribe", "error") == before + 1


async def test_subscribe_speaks_json_rpc_with_basic_auth(callr: FakeCallr) -> None:
    async with client(callr) as api:
        answer = await api.subscribe("sms.mo", "https://hooks.example.com/x", {"hmac_secret": "s"})
    assert answer.value["hash"] == "HK000000"
    asked = callr.asked[-1]
    assert (asked.method, asked.path) == ("POST", "/json-rpc/v1.1/")
    request = json.loads(asked.body)
    assert request["jsonrpc"] == "2.0"
    assert request["method"] == "webhooks.subscribe"
    assert request["params"] == ["sms.mo", "https://hooks.example.com/x", {"hmac_secret": "s"}]
    assert asked.authorization is not None
    assert asked.authorization.startswith("Basic ")


async def test_requests_are_spaced_to_the_rate(callr: FakeCallr) -> None:
    callr.add(sms_object(v1_event("e1", "ab12cd34", lifecycle(Status.CREATED, Status.SENT))))
    async with client(callr, rate=20.0) as api:
        started = time.monotonic()
        for _ in range(5):
            await api.sms("ab12cd34")
        elapsed = time.monotonic() - started
    # Five starts at most 20 a second are at least four intervals apart (a lower
    # bound: a slow machine only makes it longer).
    assert elapsed >= 4 / 20


async def test_a_search_whose_count_exceeds_its_pages_is_not_whole(callr: FakeCallr) -> None:
    page = {"jsonrpc": "2.0", "id": 1, "result": {"count": 3, "results": [{"hash": "A"}]}}
    callr.forced.append(Forced(200, json.dumps(page).encode(), JSON))
    async with client(callr) as api:
        listing = await api.search("v1", "OUT", datetime(2026, 3, 2, tzinfo=UTC), datetime.now(UTC))
    assert not listing.complete
    assert "counted 3 SMS" in listing.why


@pytest.mark.parametrize(
    "body",
    [
        b'[{"sid": "abcdefgh", "to": "+33612345678"}]',
        b'{"data": [{"sid": "abcdefgh", "to": "+33612345678"}], "total": 1}',
        b'{"items": [{"sid": "abcdefgh", "to": "+33612345678"}]}',
    ],
)
async def test_a_v2_search_page_is_read_bare_or_in_an_object(callr: FakeCallr, body: bytes) -> None:
    callr.forced.append(Forced(200, body, JSON))
    async with CallrApi(callr.url, None, None, api_key=API_KEY, rate=100) as api:
        listing = await api.search(
            "v2", "OUT", datetime(2026, 3, 2, tzinfo=UTC), datetime.now(UTC), to="+33612345678"
        )
    assert listing.complete
    assert [obj["sid"] for obj in listing.objects] == ["abcdefgh"]
    asked = callr.asked[-1]
    assert (asked.method, asked.path) == ("GET", "/v2.0/sms")
    assert asked.query["limit"] == "100"
    assert asked.query["direction"] == "outbound"
    assert asked.authorization is None  # the key alone, never the login


async def test_the_double_refuses_a_page_of_more_than_100(callr: FakeCallr) -> None:
    async with CallrApi(callr.url, None, None, api_key=API_KEY, rate=100) as api:
        answer = await api._client.get(
            f"{callr.url}/v2.0/sms", params={"limit": "101"}, headers={"x-api-key": API_KEY}
        )
    assert answer.status_code == 400
