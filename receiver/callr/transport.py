"""How the receiver speaks to CALLR's API: one HTTP client, requests spaced to a rate of
the receiver's own, JSON-RPC, REST and v2 calls tried again on a timeout, a 429 or a 5xx
with backoff (a `Retry-After` is honoured), and every other failure raised as a
`CallrApiError` with one line that says what went wrong; the credentials never appear
in it, nor in a log line. Every answer comes back with its raw bytes. The calls
themselves are in api.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, Self

import httpx
import orjson
import structlog

from receiver.retry import Backoff

log = structlog.get_logger("receiver.callr_api")

JSON_RPC_PATH = "/json-rpc/v1.1/"
REST_PATH = "/rest/v1.1"
V2_SMS_PATH = "/v2.0/sms"
_EXCERPT = 80
# 0.5, 1, 2, 4 ... seconds between the tries of a call (a Retry-After wins).
API_BACKOFF = Backoff(first=0.5, cap=30.0)


class CallrApiError(Exception):
    """A call to CALLR failed; the message is one line that says why.

    `outcome` is what receiver_callr_api_requests counts it as.
    """

    def __init__(self, message: str, outcome: str = "wrong_shape") -> None:
        super().__init__(message)
        self.outcome = outcome

    @property
    def about_the_call(self) -> bool:
        """Whether the error is this call's (a refusal, an answer of the wrong shape), not
        CALLR's as a whole (credentials refused, CALLR out of reach or throttling)."""
        return self.outcome in ("error", "wrong_shape", "not_json", "not_found")


class CallrNotFound(CallrApiError):
    """CALLR does not know the object asked for (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What CALLR answered: the raw body, and the result read from it."""

    raw: bytes
    value: Any


class _Retry(Exception):
    def __init__(self, outcome: str, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.wait = wait


class Limit(Protocol):
    """Waits for the turn of the next request to CALLR."""

    async def wait(self) -> None: ...


class RateLimit:
    """Spaces the starts of requests to at most `rate` a second."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
                now = self._next
            self._next = now + self._interval


class Transport:
    """The HTTP side of the calls, over one connection pool."""

    def __init__(
        self,
        base_url: str,
        login: str | None,
        password: str | None,
        *,
        api_key: str | None = None,
        rate: float = 5.0,
        limit: Limit | None = None,
        timeout: float = 10.0,
        retries: int = 4,
        max_wait: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observe: Callable[[str, str], None] | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._client = httpx.AsyncClient(
            auth=httpx.BasicAuth(login, password) if login and password else None,
            timeout=timeout,
            headers={"user-agent": "receiver (CALLR webhook receiver)"},
            follow_redirects=False,
        )
        self._timeout = timeout
        self._retries = retries
        self._max_wait = max_wait
        self._limit: Limit = limit or RateLimit(rate)
        self._sleep = sleep
        # Told each try's call and outcome (the caller counts them: this package keeps
        # no metrics of its own).
        self._observe = observe or _unobserved

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def turn(self) -> None:
        """Wait for the turn of the next request at CALLR's rate."""
        await self._limit.wait()

    async def _rpc(self, method: str, params: list[object]) -> Answer:
        body = rpc_body(method, params)

        def read(response: httpx.Response) -> Answer:
            document = _json(method, response)
            if isinstance(document, dict) and isinstance(document.get("error"), dict):
                error = document["error"]
                raise CallrApiError(
                    f"CALLR refused {method}: {one_line(error.get('message'))}"
                    f" (code {one_line(error.get('code'))})",
                    "error",
                )
            if not isinstance(document, dict) or "result" not in document:
                raise CallrApiError(
                    f"CALLR's answer to {method} has neither result nor error: "
                    + excerpt(response.content)
                )
            return Answer(response.content, document["result"])

        return await self._call(
            method,
            lambda: self._client.post(
                self._base + JSON_RPC_PATH,
                content=body,
                headers={"content-type": "application/json-rpc; charset=utf-8"},
            ),
            read,
        )

    async def _rest(self, label: str, path: str, query: dict[str, str] | None = None) -> Answer:
        def read(response: httpx.Response) -> Answer:
            if response.status_code == 404:
                raise CallrNotFound(f"CALLR does not know it ({label}: HTTP 404)", "not_found")
            document = _json(label, response)
            wrapped = isinstance(document, dict) and set(document) == {"status", "data"}
            value = document["data"] if wrapped else document
            if response.status_code >= 400 or (wrapped and document["status"] == "error"):
                raise CallrApiError(
                    f"CALLR refused {label} (HTTP {response.status_code}): {error_text(value)}",
                    "error",
                )
            return Answer(response.content, value)

        return await self._call(
            label, lambda: self._client.get(self._base + REST_PATH + path, params=query), read
        )

    async def _v2_get(self, label: str, query: dict[str, str]) -> Answer:
        def read(response: httpx.Response) -> Answer:
            document = _json(label, response)
            if response.status_code >= 400:
                raise CallrApiError(
                    f"CALLR refused {label} (HTTP {response.status_code}): {error_text(document)}",
                    "error",
                )
            return Answer(response.content, document)

        return await self._call(
            label,
            lambda: self._client.get(
                self._base + V2_SMS_PATH,
                params=query,
                headers={"accept": "application/json", "x-api-key": self._api_key or ""},
                auth=None,
            ),
            read,
        )

    async def _call(
        self,
        label: str,
        send: Callable[[], Awaitable[httpx.Response]],
        read: Callable[[httpx.Response], Answer],
    ) -> Answer:
        for attempt in range(self._retries + 1):
            await self._limit.wait()
            try:
                response = await self._send(label, send)
                answer = read(response)
            except _Retry as retry:
                self._observe(label, retry.outcome)
                if attempt == self._retries:
                    raise CallrApiError(
                        f"{label}: {retry}; gave up after {self._retries + 1} tries",
                        retry.outcome,
                    ) from None
                wait = retry.wait if retry.wait is not None else API_BACKOFF.delay(attempt + 1)
                if wait > self._max_wait:
                    raise CallrApiError(
                        f"{label}: {retry}; CALLR asks to wait {wait:.0f} s, more than"
                        f" {self._max_wait:.0f} s",
                        retry.outcome,
                    ) from None
                log.warning(
                    "callr_api_retry",
                    call=label,
                    outcome=retry.outcome,
                    reason=str(retry),
                    wait_s=round(wait, 2),
                )
                await self._sleep(wait)
                continue
            except CallrApiError as error:
                self._observe(label, error.outcome)
                raise
            self._observe(label, "ok")
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, label: str, send: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        try:
            response = await send()
        except httpx.TimeoutException:
            raise _Retry("timeout", f"no answer from CALLR within {self._timeout:g} s") from None
        except httpx.TransportError as error:
            raise _Retry(
                "unreachable", f"cannot reach CALLR: {one_line(error) or type(error).__name__}"
            ) from None
        status = response.status_code
        if status in (401, 403):
            raise CallrApiError(
                f"CALLR refused the credentials for {label} (HTTP {status}): check "
                + (
                    "RECEIVER_CALLR_API_KEY"
                    if label.endswith("/v2.0/sms")
                    else "RECEIVER_CALLR_API_LOGIN and RECEIVER_CALLR_API_PASSWORD"
                ),
                "unauthorized",
            )
        if status == 429:
            raise _Retry("throttled", "CALLR is throttling (HTTP 429)", retry_after(response))
        if status >= 500:
            raise _Retry("server_error", f"CALLR failed (HTTP {status})", retry_after(response))
        return response


def _unobserved(call: str, outcome: str) -> None:
    pass


def rpc_body(method: str, params: list[object]) -> bytes:
    """A JSON-RPC 2.0 request as CALLR takes it."""
    request_id = random.randint(1, 2**31)  # noqa: S311 (an id, not a secret)
    return orjson.dumps({"id": request_id, "jsonrpc": "2.0", "method": method, "params": params})


def rpc_error(raw: bytes) -> str | None:
    """CALLR's JSON-RPC error object in `raw` (its code and message), if that is what it is."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict) or "code" not in error or "message" not in error:
        return None
    return f"{one_line(error.get('message'))} (code {one_line(error.get('code'))})"


def _json(label: str, response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise CallrApiError(
            f"CALLR answered {label} with {kind}, not JSON (HTTP {response.status_code}):"
            f" {excerpt(response.content)}",
            "not_json",
        ) from None


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def error_text(data: Any) -> str:
    if isinstance(data, dict):
        message = data.get("message") or data.get("error") or data
        code = data.get("code")
        return one_line(message) + (f" (code {one_line(code)})" if code is not None else "")
    return one_line(data)


def one_line(value: object) -> str:
    return " ".join(str(value).split())[:200]


def excerpt(raw: bytes) -> str:
    text = one_line(raw.decode("utf-8", "replace"))
    return repr(text[:_EXCERPT] + ("..." if len(text) > _EXCERPT else ""))
