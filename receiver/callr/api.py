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

Every answer comes back with its raw bytes, which the receiver stores as they came;
how a call is carried, tried again and refused is transport.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import orjson

from receiver.callr.transport import (
    API_BACKOFF,
    JSON_RPC_PATH,
    V2_SMS_PATH,
    Answer,
    CallrApiError,
    CallrNotFound,
    Transport,
    error_text,
    excerpt,
    one_line,
    retry_after,
    rpc_body,
    rpc_error,
)

__all__ = [
    "API_BACKOFF",
    "Answer",
    "CallrApi",
    "CallrApiError",
    "CallrNotFound",
    "Listing",
    "SendAnswer",
]

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


@dataclass(frozen=True, slots=True)
class Listing:
    """The SMS objects a search found (v1 or v2 shape, as the search answered them)."""

    objects: list[dict[str, object]]
    complete: bool
    """Every page was read: an SMS not in `objects` is not in CALLR's list."""
    why: str = ""
    """When not complete: why."""


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


class CallrApi(Transport):
    """The calls, over one connection pool; use as `async with CallrApi(...) as api`."""

    async def gsm_charset_mapping(self) -> dict[str, str]:
        """`sms.get_gsm_charset_mapping()`: what a forced GSM turns each character into.

        Read as an object (character to replacement), or as an array of pairs or of
        objects holding two strings (the character, then its replacement)."""
        answer = await self._rpc("sms.get_gsm_charset_mapping", [])
        mapping = _mapping(answer.value)
        if mapping is None:
            raise CallrApiError(
                "CALLR's answer to sms.get_gsm_charset_mapping is not a mapping of characters: "
                + excerpt(answer.raw)
            )
        return mapping

    async def quote(self, to: str, text: str, options: Mapping[str, object] | None) -> Answer:
        """`sms.get_quote(to, text, options)`: CALLR's own count of parts, encoding and cost."""
        answer = await self._rpc("sms.get_quote", [to, text, options])
        if not isinstance(answer.value, dict):
            raise CallrApiError(
                "CALLR's answer to sms.get_quote is not a quote: " + excerpt(answer.raw)
            )
        return answer

    async def subscribe(
        self, event_type: str, endpoint: str, options: Mapping[str, object] | None
    ) -> Answer:
        """`webhooks.subscribe(type, endpoint, options)`: the new subscription (its `hash`)."""
        answer = await self._rpc("webhooks.subscribe", [event_type, endpoint, options])
        hook = answer.value
        if not isinstance(hook, dict) or not isinstance(hook.get("hash"), str) or not hook["hash"]:
            raise CallrApiError(
                "CALLR's answer to webhooks.subscribe has no webhook hash: " + excerpt(answer.raw)
            )
        return answer

    async def sms(self, sms_id: str) -> Answer:
        """`GET /sms/<hash>`: one SMS object; `CallrNotFound` when CALLR does not know it."""
        answer = await self._rest("GET /sms/<hash>", f"/sms/{sms_id.upper()}")
        if not isinstance(answer.value, dict):
            raise CallrApiError(
                f"CALLR's answer to GET /sms/<hash> is not an SMS object: {excerpt(answer.raw)}"
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
        found: dict[str, dict[str, object]] = {}
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
            body = rpc_body("sms.send", [sender or "", to, text, options or None])
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
            return SendAnswer("not_sent", f"cannot reach CALLR: {one_line(error) or 'refused'}")
        except httpx.TimeoutException:
            return SendAnswer("lost", f"no answer from CALLR within {self._timeout:g} s")
        except httpx.TransportError as error:
            return SendAnswer(
                "lost", f"the answer was cut: {one_line(error) or type(error).__name__}"
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
                "not_sent", "CALLR is throttling (HTTP 429)", wait=retry_after(response)
            )
        if status >= 500:
            # A gateway's 5xx (502, 504) may come after CALLR made the SMS: a lost answer,
            # looked for before any new try. Only CALLR's own error object says it made
            # nothing.
            refusal = rpc_error(response.content) if api == "v1" else None
            if refusal is not None:
                return SendAnswer(
                    "not_sent",
                    f"CALLR failed (HTTP {status}): {refusal}",
                    wait=retry_after(response),
                )
            return SendAnswer(
                "lost",
                f"CALLR's answer was HTTP {status} ({excerpt(response.content)}): the SMS may"
                " have been made",
            )
        try:
            document = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return SendAnswer(
                "lost", f"CALLR's answer (HTTP {status}) is not JSON: {excerpt(response.content)}"
            )
        if api == "v1":
            return _v1_send_answer(status, document, response.content)
        return _v2_send_answer(status, document, response.content)


def _v1_send_answer(status: int, document: Any, raw: bytes) -> SendAnswer:
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        error = document["error"]
        text = f"{one_line(error.get('message'))} (code {one_line(error.get('code'))})"
        return SendAnswer("rejected", f"CALLR refused sms.send: {text}", error=text)
    result = document.get("result") if isinstance(document, dict) else None
    if status < 300 and isinstance(result, str) and result.strip():
        return SendAnswer("accepted", "CALLR created the SMS", sms_id=result.strip())
    return SendAnswer("lost", f"CALLR's answer to sms.send has no SMS id: {excerpt(raw)}")


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
        text = f"HTTP {status}: {error_text(document)}"
        return SendAnswer("rejected", f"CALLR refused POST /v2.0/sms ({text})", error=text)
    return SendAnswer("lost", f"CALLR's answer to POST /v2.0/sms has no sid: {excerpt(raw)}")


def _page(label: str, answer: Answer) -> tuple[list[dict[str, object]], int | None]:
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
            f"CALLR's answer to {label} is not a page of SMS objects: {excerpt(answer.raw)}"
        )
    return value, total


def _mapping(value: Any) -> dict[str, str] | None:
    if isinstance(value, dict):
        pairs: list[object] = list(value.items())
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
