"""A small client for the CALLR API calls the receiver makes (docs/callr-api.md).

Two of CALLR's interfaces with the API login and password (HTTP basic auth):
JSON-RPC 2.0 (`POST {base}/json-rpc/v1.1/`: `webhooks.subscribe`, `sms.send`,
`sms.search`) and REST v1.1 (`GET {base}/rest/v1.1/sms/<hash>`, one SMS); and v2
with the API key (`x-api-key`): `POST {base}/v2.0/sms` to send, `GET {base}/v2.0/sms`
to search. REST answers are read bare (an object, an array), as CALLR's REST pages
show them, or wrapped in `{"status", "data"}`, as CALLR's gateway has answered them.

Sending (`send_sms`) is tried once: what CALLR's answer says of the SMS is the
caller's to act on (`SendAnswer`), since CALLR has no idempotency key and a try
again could send the SMS twice. Only a connection that never opened, a 401/403, a
429 and CALLR's own error object say that nothing was made; any other 5xx and any
answer cut once the request was written may hide a made SMS (`lost`). A v2 send
carries `to`, `from`, `encoding` and `trafficType` in the query and the text alone
in the body, as CALLR's v2 reference lists them.

Searches (`search`) read every page (`sms.search`'s offset and limit; v2's `offset`
and `limit`, 100 at most) until one comes back short, and say whether the list is
whole (`Listing.complete`): a caller never takes an SMS for absent from a list that
may have been cut.

Every answer comes back with its raw bytes, which the receiver stores as they came.
Timeouts, 429 and 5xx answers are tried again with backoff (a `Retry-After` is
honoured); requests are spaced to a rate of the receiver's own. Anything else
raises `CallrApiError` with one line that says what went wrong; the credentials
never appear in it, nor in a log line.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

import httpx
import orjson
import structlog

from receiver.retry import Backoff

log = structlog.get_logger("receiver.callr_api")

JSON_RPC_PATH = "/json-rpc/v1.1/"
REST_PATH = "/rest/v1.1"
V2_SMS_PATH = "/v2.0/sms"
PAGE = 100
"""SMS a page of a search: v2's most, and sms.search's page the same."""
MAX_PAGES = 50
"""Pages read by one search at most; a longer list is reported as not whole."""
# How far the two searches' filters reach, in CALLR's names: SMS.SearchFilters and
# Search.Options for sms.search, the query of `GET /v2.0/sms` for v2.
V1_DIRECTIONS = {"OUT": "OUT", "IN": "IN"}
V2_DIRECTIONS = {"OUT": "outbound", "IN": "inbound"}
# CALLR's REST dates: "YYYY-MM-DD HH:MM:SS" in UTC.
REST_DATE = "%Y-%m-%d %H:%M:%S"
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
class Listing:
    """The SMS objects a search found (v1 or v2 shape, as the search answered them)."""

    objects: list[dict[str, Any]]
    complete: bool
    """Every page was read: an SMS not in `objects` is not in CALLR's list."""
    why: str = ""
    """When not complete: why."""


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


@dataclass(frozen=True, slots=True)
class SendAnswer:
    """What one try of a send tells of the SMS.

    - `accepted`: CALLR created it; `sms_id` is its id.
    - `rejected`: CALLR refused it (`error`, with CALLR's code); a try again would be too.
    - `not_sent`: the request certainly created nothing (no connection, 429, the
      credentials refused, CALLR's own error object); `wait` is CALLR's Retry-After
      when it gave one.
    - `lost`: the request may have reached CALLR and its answer did not come back
      whole (a timeout, a connection cut, any other 5xx, an answer that cannot be read).
    """

    outcome: Literal["accepted", "rejected", "not_sent", "lost"]
    reason: str
    sms_id: str | None = None
    error: str | None = None
    wait: float | None = None
    parts: int | None = None
    """The parts CALLR bills, when its answer says (v2's SMS object)."""
    encoding: str | None = None
    """The encoding CALLR sends in, when its answer says (v2's SMS object)."""


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


class CallrApi:
    """The calls, over one connection pool; use as `async with CallrApi(...) as api`."""

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

    async def __aenter__(self) -> CallrApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def gsm_charset_mapping(self) -> dict[str, str]:
        """`sms.get_gsm_charset_mapping()`: what a forced GSM turns each character into.

        Read as an object (character to replacement), or as an array of pairs or of
        objects holding two strings (the character, then its replacement)."""
        answer = await self._rpc("sms.get_gsm_charset_mapping", [])
        mapping = _mapping(answer.value)
        if mapping is None:
            raise CallrApiError(
                "CALLR's answer to sms.get_gsm_charset_mapping is not a mapping of characters: "
                + _excerpt(answer.raw)
            )
        return mapping

    async def quote(self, to: str, text: str, options: dict[str, Any] | None) -> Answer:
        """`sms.get_quote(to, text, options)`: CALLR's own count of parts, encoding and cost."""
        answer = await self._rpc("sms.get_quote", [to, text, options])
        if not isinstance(answer.value, dict):
            raise CallrApiError(
                "CALLR's answer to sms.get_quote is not a quote: " + _excerpt(answer.raw)
            )
        return answer

    async def subscribe(
        self, event_type: str, endpoint: str, options: dict[str, Any] | None
    ) -> Answer:
        """`webhooks.subscribe(type, endpoint, options)`: the new subscription (its `hash`)."""
        answer = await self._rpc("webhooks.subscribe", [event_type, endpoint, options])
        hook = answer.value
        if not isinstance(hook, dict) or not isinstance(hook.get("hash"), str) or not hook["hash"]:
            raise CallrApiError(
                "CALLR's answer to webhooks.subscribe has no webhook hash: " + _excerpt(answer.raw)
            )
        return answer

    async def sms(self, sms_id: str) -> Answer:
        """`GET /sms/<hash>`: one SMS object; `CallrNotFound` when CALLR does not know it."""
        answer = await self._rest("GET /sms/<hash>", f"/sms/{sms_id.upper()}")
        if not isinstance(answer.value, dict):
            raise CallrApiError(
                f"CALLR's answer to GET /sms/<hash> is not an SMS object: {_excerpt(answer.raw)}"
            )
        return answer

    async def search(
        self,
        api: Literal["v1", "v2"],
        direction: Literal["OUT", "IN"],
        since: datetime,
        until: datetime,
        *,
        to: str | None = None,
    ) -> Listing:
        """The SMS of a window, every page of it: JSON-RPC `sms.search` (v1, the login) or
        `GET /v2.0/sms` (v2, the API key). `to` narrows v2's search to one number (v1's
        filters are the window and the direction; the caller matches the rest)."""
        found: dict[str, dict[str, Any]] = {}
        for page in range(MAX_PAGES):
            offset = page * PAGE
            if api == "v1":
                label = "sms.search"
                filters = {
                    "type": V1_DIRECTIONS[direction],
                    "from": since.astimezone(UTC).strftime(REST_DATE),
                    "to": until.astimezone(UTC).strftime(REST_DATE),
                }
                answer = await self._rpc(label, [filters, {"offset": offset, "limit": PAGE}])
            else:
                label = "GET /v2.0/sms"
                query = {
                    "direction": V2_DIRECTIONS[direction],
                    "startDate": _rfc3339(since),
                    "endDate": _rfc3339(until),
                    "offset": str(offset),
                    "limit": str(PAGE),
                }
                if to is not None:
                    query["to"] = to
                answer = await self._v2_get(label, query)
            items, total = _page(label, answer)
            for item in items:
                # A page read after new SMS came in may repeat some of the one before.
                found[str(item.get("hash") or item.get("sid") or len(found)).lower()] = item
            if len(items) < PAGE:
                if total is not None and total > len(found):
                    return Listing(
                        list(found.values()),
                        False,
                        f"{label} counted {total} SMS and its pages held {len(found)}",
                    )
                return Listing(list(found.values()), True)
        return Listing(
            list(found.values()),
            False,
            f"{label} has more than {MAX_PAGES} pages of {PAGE} for the window",
        )

    async def turn(self) -> None:
        """Wait for the turn of the next request at CALLR's rate."""
        await self._limit.wait()

    async def send_sms(
        self,
        api: Literal["v1", "v2"],
        *,
        to: str,
        text: str,
        sender: str | None,
        user_data: str | None,
        nature: str | None,
        encoding: str | None,
    ) -> SendAnswer:
        """One try of a send: JSON-RPC `sms.send` (v1) or `POST /v2.0/sms` (v2).

        Call `turn` first: the try is the caller's to record between the two.
        """
        if api == "v1":
            options = {
                "user_data": user_data,
                "nature": nature.upper() if nature else None,
                "force_encoding": encoding.upper() if encoding else None,
            }
            options = {k: v for k, v in options.items() if v is not None}
            body = _rpc_body("sms.send", [sender or "", to, text, options or None])
            label = "sms.send"
            request = self._client.build_request(
                "POST",
                self._base + JSON_RPC_PATH,
                content=body,
                headers={"content-type": "application/json-rpc; charset=utf-8"},
            )
        else:
            # CALLR's v2 reference: the numbers, the encoding and the traffic type in the
            # query, the text alone in the body.
            query = {"to": to, "from": sender, "encoding": encoding, "trafficType": nature}
            label = "POST /v2.0/sms"
            request = self._client.build_request(
                "POST",
                self._base + V2_SMS_PATH,
                params={k: v for k, v in query.items() if v},
                content=orjson.dumps({"text": text}),
                headers={
                    "content-type": "application/json",
                    "accept": "application/json",
                    "x-api-key": self._api_key or "",
                },
            )
        answer = await self._send_once(label, request, api)
        self._observe(label, answer.outcome)
        return answer

    async def _send_once(
        self, label: str, request: httpx.Request, api: Literal["v1", "v2"]
    ) -> SendAnswer:
        try:
            # v2 goes with its key alone, never the login's basic auth.
            sending = (
                self._client.send(request, auth=None) if api == "v2" else self._client.send(request)
            )
            response = await sending
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            # The request never left: nothing was created.
            return SendAnswer("not_sent", f"cannot reach CALLR: {_one_line(error) or 'refused'}")
        except httpx.TimeoutException:
            return SendAnswer("lost", f"no answer from CALLR within {self._timeout:g} s")
        except httpx.TransportError as error:
            return SendAnswer(
                "lost", f"the answer was cut: {_one_line(error) or type(error).__name__}"
            )
        status = response.status_code
        if status in (401, 403):
            return SendAnswer(
                "not_sent",
                f"CALLR refused the credentials for {label} (HTTP {status}): check"
                + (" RECEIVER_CALLR_API_KEY" if api == "v2" else " RECEIVER_CALLR_API_LOGIN"),
            )
        if status == 429:
            return SendAnswer(
                "not_sent", "CALLR is throttling (HTTP 429)", wait=_retry_after(response)
            )
        if status >= 500:
            # A gateway's 5xx (502, 504) may come after CALLR made the SMS: a lost answer,
            # looked for before any new try. Only CALLR's own error object says it made
            # nothing.
            refusal = _rpc_error(response.content) if api == "v1" else None
            if refusal is not None:
                return SendAnswer(
                    "not_sent",
                    f"CALLR failed (HTTP {status}): {refusal}",
                    wait=_retry_after(response),
                )
            return SendAnswer(
                "lost",
                f"CALLR's answer was HTTP {status} ({_excerpt(response.content)}): the SMS may"
                " have been made",
            )
        try:
            document = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return SendAnswer(
                "lost", f"CALLR's answer (HTTP {status}) is not JSON: {_excerpt(response.content)}"
            )
        if api == "v1":
            return _v1_send_answer(status, document, response.content)
        return _v2_send_answer(status, document, response.content)

    async def _rpc(self, method: str, params: list[Any]) -> Answer:
        body = _rpc_body(method, params)

        def read(response: httpx.Response) -> Answer:
            document = _json(method, response)
            if isinstance(document, dict) and isinstance(document.get("error"), dict):
                error = document["error"]
                raise CallrApiError(
                    f"CALLR refused {method}: {_one_line(error.get('message'))}"
                    f" (code {_one_line(error.get('code'))})",
                    "error",
                )
            if not isinstance(document, dict) or "result" not in document:
                raise CallrApiError(
                    f"CALLR's answer to {method} has neither result nor error: "
                    + _excerpt(response.content)
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
                    f"CALLR refused {label} (HTTP {response.status_code}): {_error_text(value)}",
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
                    f"CALLR refused {label} (HTTP {response.status_code}): {_error_text(document)}",
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
                "unreachable", f"cannot reach CALLR: {_one_line(error) or type(error).__name__}"
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
            raise _Retry("throttled", "CALLR is throttling (HTTP 429)", _retry_after(response))
        if status >= 500:
            raise _Retry("server_error", f"CALLR failed (HTTP {status})", _retry_after(response))
        return response


def _unobserved(call: str, outcome: str) -> None:
    pass


def _rpc_body(method: str, params: list[Any]) -> bytes:
    """A JSON-RPC 2.0 request as CALLR takes it."""
    request_id = random.randint(1, 2**31)  # noqa: S311 (an id, not a secret)
    return orjson.dumps({"id": request_id, "jsonrpc": "2.0", "method": method, "params": params})


def _rpc_error(raw: bytes) -> str | None:
    """CALLR's JSON-RPC error object in `raw` (its code and message), if that is what it is."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict) or "code" not in error or "message" not in error:
        return None
    return f"{_one_line(error.get('message'))} (code {_one_line(error.get('code'))})"


def _v1_send_answer(status: int, document: Any, raw: bytes) -> SendAnswer:
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        error = document["error"]
        text = f"{_one_line(error.get('message'))} (code {_one_line(error.get('code'))})"
        return SendAnswer("rejected", f"CALLR refused sms.send: {text}", error=text)
    result = document.get("result") if isinstance(document, dict) else None
    if status < 300 and isinstance(result, str) and result.strip():
        return SendAnswer("accepted", "CALLR created the SMS", sms_id=result.strip())
    return SendAnswer("lost", f"CALLR's answer to sms.send has no SMS id: {_excerpt(raw)}")


def _v2_send_answer(status: int, document: Any, raw: bytes) -> SendAnswer:
    sid = document.get("sid") if isinstance(document, dict) else None
    if status < 300 and isinstance(sid, str) and sid.strip():
        parts = document.get("parts")
        encoding = document.get("encoding")
        return SendAnswer(
            "accepted",
            "CALLR created the SMS",
            sms_id=sid.strip(),
            parts=parts if isinstance(parts, int) and parts > 0 else None,
            encoding=encoding.lower() if encoding in ("gsm", "unicode", "GSM", "UNICODE") else None,
        )
    if 400 <= status < 500:
        text = f"HTTP {status}: {_error_text(document)}"
        return SendAnswer("rejected", f"CALLR refused POST /v2.0/sms ({text})", error=text)
    return SendAnswer("lost", f"CALLR's answer to POST /v2.0/sms has no sid: {_excerpt(raw)}")


def _page(label: str, answer: Answer) -> tuple[list[dict[str, Any]], int | None]:
    """A search page's SMS objects, and the count of the whole list when it gives one.

    Read bare (an array) or as an object holding the array (`results`, `data`,
    `items`) beside its count (`count`, `total`)."""
    value = answer.value
    total = None
    if isinstance(value, dict):
        counted = next((value[k] for k in ("count", "total") if k in value), None)
        total = counted if isinstance(counted, int) and not isinstance(counted, bool) else None
        value = next((value[k] for k in ("results", "data", "items") if k in value), None)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise CallrApiError(
            f"CALLR's answer to {label} is not a page of SMS objects: {_excerpt(answer.raw)}"
        )
    return value, total


def _mapping(value: Any) -> dict[str, str] | None:
    if isinstance(value, dict):
        pairs: list[Any] = list(value.items())
    elif isinstance(value, list):
        pairs = [list(item.values()) if isinstance(item, dict) else item for item in value]
    else:
        return None
    mapping = {}
    for pair in pairs:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            return None
        char, replacement = pair
        if not isinstance(char, str) or not isinstance(replacement, str) or len(char) != 1:
            return None
        mapping[char] = replacement
    return mapping


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(label: str, response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise CallrApiError(
            f"CALLR answered {label} with {kind}, not JSON (HTTP {response.status_code}):"
            f" {_excerpt(response.content)}",
            "not_json",
        ) from None


def _retry_after(response: httpx.Response) -> float | None:
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


def _error_text(data: Any) -> str:
    if isinstance(data, dict):
        message = data.get("message") or data.get("error") or data
        code = data.get("code")
        return _one_line(message) + (f" (code {_one_line(code)})" if code is not None else "")
    return _one_line(data)


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:200]


def _excerpt(raw: bytes) -> str:
    text = _one_line(raw.decode("utf-8", "replace"))
    return repr(text[:_EXCERPT] + ("..." if len(text) > _EXCERPT else ""))
