"""A fake CALLR API on loopback, built from the shapes CALLR documents (docs/callr-api.md).

JSON-RPC 2.0 at `/json-rpc/v1.1/` (`webhooks.subscribe`, `sms.send`), REST v1.1 at
`/rest/v1.1/sms` (a list by type and dates; `POST` sends) and `/rest/v1.1/sms/<hash>`,
all behind basic auth; v2's `POST /v2.0/sms` behind `x-api-key`. `forced` answers
come first, one per request, to play CALLR's failures; `faults` play a send's, one
per send (see `SEND_FAULTS`). Every SMS a send created is in `created`, in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn

from tests.forwarding.handler_server import serve_on_loopback, stop_serving

LOGIN = "api-login"
PASSWORD = "api-password-7d1f"
API_KEY = "v2-api-key-5e0c94d1b7"
# How a send may misbehave: create the SMS then cut the connection before the answer
# ends; create it then answer only after the client gave up; hang without creating;
# 503 or 429 without creating; refuse it with CALLR's error (nothing created).
SEND_FAULTS = (
    "drop",  # the SMS made, the answer cut
    "hang",  # the SMS made, the answer late
    "hang_before",  # nothing made, the answer late
    "503",  # nothing made, a gateway's 503
    "429",  # nothing made, CALLR throttling
    "refuse",  # nothing made, CALLR's refusal
    "refuse_500",  # nothing made, CALLR's error object with HTTP 500
    "made_500",  # the SMS made, then a 500 (a gateway's, or CALLR's after the fact)
    "made_502",
    "made_504",
    "ok",
)


@dataclass
class Forced:
    """One scripted answer: status, headers, body, and a wait before it is sent."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    cut: bool = False
    """Send the head and part of the body, then close the connection."""


@dataclass
class Asked:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    authorization: str | None


@dataclass
class FakeCallr:
    sms: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The account's SMS, by hash (v1 objects)."""
    forced: list[Forced] = field(default_factory=list)
    asked: list[Asked] = field(default_factory=list)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    """What the next sends do, one each (SEND_FAULTS); none left: they succeed."""
    created: list[dict[str, Any]] = field(default_factory=list)
    """Every SMS a send created (v1 objects), in order."""
    hang_seconds: float = 3.0
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, obj: dict[str, Any]) -> None:
        self.sms[obj["hash"].upper()] = obj

    def settings(self) -> dict[str, Any]:
        """The receiver's settings that point at this fake."""
        return {
            "callr_api_url": self.url,
            "callr_api_login": LOGIN,
            "callr_api_password": PASSWORD,
            "callr_api_rate": 100.0,
            "callr_api_timeout": 2.0,
        }

    def v2_settings(self) -> dict[str, Any]:
        """Settings that send through v2 with the API key, with no login."""
        return {
            "callr_api_url": self.url,
            "callr_api_key": API_KEY,
            "callr_api_rate": 100.0,
            "callr_api_timeout": 2.0,
        }

    def environment(self) -> dict[str, str]:
        return {f"RECEIVER_{k.upper()}": str(v) for k, v in self.settings().items()}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        self.asked.append(
            Asked(scope["method"], scope["path"], query, body, headers.get("authorization"))
        )
        answer = self._answer(scope["method"], scope["path"], query, body, headers)
        await asyncio.sleep(answer.delay)
        head = dict(answer.headers)
        if answer.cut:
            head["content-length"] = str(len(answer.body) + 100)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in head.items()],
            }
        )
        if answer.cut:
            # The body falls short of its length: the server closes the connection.
            await send({"type": "http.response.body", "body": answer.body[:5], "more_body": True})
            return
        await send({"type": "http.response.body", "body": answer.body})

    def _answer(
        self, method: str, path: str, query: dict[str, str], body: bytes, headers: dict[str, str]
    ) -> Forced:
        if self.forced:
            return self.forced.pop(0)
        if method == "POST" and path == "/v2.0/sms":
            return self._v2_send(query, body, headers)
        expected = "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
        if headers.get("authorization") != expected:
            return _rest(401, "error", {"code": 401, "message": "Authentication failed"})
        if method == "POST" and path == "/json-rpc/v1.1/":
            return self._rpc(orjson.loads(body))
        if method == "GET" and path == "/rest/v1.1/sms":
            return self._list(query)
        if method == "POST" and path == "/rest/v1.1/sms":
            request = orjson.loads(body)
            return self._send(
                request.get("from"),
                request["to"],
                request["body"],
                request.get("options"),
                lambda sms: _rest(200, "success", sms["hash"]),
                lambda code, message: _rest(400, "error", {"code": code, "message": message}),
            )
        if method == "GET" and path.startswith("/rest/v1.1/sms/"):
            found = self.sms.get(path.rsplit("/", 1)[1])
            if found is None:
                return _rest(404, "error", {"code": 404, "message": "SMS not found"})
            return _rest(200, "success", found)
        return _rest(404, "error", {"code": 404, "message": "no such endpoint"})

    def _rpc(self, request: dict[str, Any]) -> Forced:
        if request.get("method") == "sms.send":
            sender, to, text, options = request["params"]
            return self._send(
                sender,
                to,
                text,
                options,
                lambda sms: Forced(
                    200,
                    orjson.dumps({"jsonrpc": "2.0", "id": request["id"], "result": sms["hash"]}),
                    {"content-type": "application/json"},
                ),
                lambda code, message: _rpc_error(request, code, message),
            )
        if request.get("method") != "webhooks.subscribe":
            return _rpc_error(request, -32601, "Method not found")
        event_type, endpoint, options = request["params"]
        hook = {
            "hash": f"HK{len(self.webhooks):06d}",
            "event_type": event_type,
            "endpoint": endpoint,
            "options": options,
            "active": True,
        }
        self.webhooks.append(hook)
        return Forced(200, orjson.dumps({"jsonrpc": "2.0", "id": request["id"], "result": hook}))

    def _v2_send(self, query: dict[str, str], body: bytes, headers: dict[str, str]) -> Forced:
        if headers.get("x-api-key") != API_KEY:
            return Forced(401, orjson.dumps({"message": "invalid api key"}))
        request = orjson.loads(body)
        options = {"nature": query.get("trafficType", "marketing").upper()}
        return self._send(
            request.get("from"),
            query["to"],
            request["text"],
            options,
            lambda sms: Forced(202, orjson.dumps(_v2_object(sms)), _JSON),
            lambda code, message: Forced(
                400, orjson.dumps({"code": code, "message": message}), _JSON
            ),
        )

    def _send(
        self,
        sender: str | None,
        to: str,
        text: str,
        options: dict[str, Any] | None,
        accepted: Callable[[dict[str, Any]], Forced],
        refused: Callable[[int, str], Forced],
    ) -> Forced:
        """A send: the SMS made (or not) as the next fault says, and the answer."""
        fault = self.faults.pop(0) if self.faults else "ok"
        if fault == "503":
            return Forced(503, b"Service Unavailable")
        if fault == "429":
            return Forced(429, b"Too Many Requests", {"retry-after": "0"})
        if fault == "hang_before":
            return Forced(503, b"late", delay=self.hang_seconds)
        if fault == "refuse":
            return refused(22, "INVALID_PHONE_NUMBER")
        if fault == "refuse_500":
            answer = refused(1, "INTERNAL_ERROR")
            answer.status = 500
            return answer
        sms = self._create(sender, to, text, options or {})
        if fault.startswith("made_"):
            return Forced(int(fault.removeprefix("made_")), b"<html>Bad Gateway</html>")
        answer = accepted(sms)
        if fault == "drop":
            answer.cut = True
        elif fault == "hang":
            answer.delay = self.hang_seconds
        return answer

    def _create(
        self, sender: str | None, to: str, text: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        sms = {
            "type": "OUT",
            "hash": f"S{len(self.created):07d}",
            "from": sender or "SMS",
            "to": to,
            "text": text,
            "options": options or None,
            "encoding": options.get("force_encoding", "GSM"),
            "user_data": options.get("user_data", ""),
            "status": "PENDING",
            "status_error": "",
            "parts": 1,
            "nature": options.get("nature", "MARKETING"),
            "network": "",
            "b_customer_mode": "PREPAID",
            "b_customer_debit": "0.00",
            "date_creation": now,
            "date_update": now,
            "date_sent": "0000-00-00 00:00:00",
            "date_received": "0000-00-00 00:00:00",
            "status_history": [],
        }
        self.created.append(sms)
        self.add(sms)
        return sms

    def _list(self, query: dict[str, str]) -> Forced:
        since, until = _date(query["from"]), _date(query["to"])
        found = [
            obj
            for obj in self.sms.values()
            if obj["type"] == query["type"] and since <= _date(obj["date_creation"]) <= until
        ]
        return _rest(200, "success", found)

    async def start(self) -> None:
        self._server, self._task, self.port = serve_on_loopback(self)

    async def stop(self) -> None:
        await stop_serving(self._server, self._task)


_JSON = {"content-type": "application/json"}


def _v2_object(sms: dict[str, Any]) -> dict[str, Any]:
    """The v2 answer to a send, as CALLR documents it."""
    created = sms["date_creation"].replace(" ", "T") + "Z"
    return {
        "sid": sms["hash"].lower(),
        "direction": "outbound",
        "from": sms["from"],
        "to": sms["to"],
        "body": {"text": sms["text"]},
        "trafficType": sms["nature"].lower(),
        "status": "created",
        "error": "",
        "created": created,
        "updated": created,
        "sent": None,
        "delivered": None,
        "encoding": sms["encoding"].lower(),
        "parts": 1,
        "network": "",
        "cost": "0",
        "paymentType": "prepaid",
        "statusHistory": [],
    }


def _rest(status: int, outcome: str, data: Any) -> Forced:
    return Forced(
        status,
        orjson.dumps({"status": outcome, "data": data}),
        {"content-type": "application/json"},
    )


def _rpc_error(request: dict[str, Any], code: int, message: str) -> Forced:
    error = {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": code, "message": message}}
    return Forced(200, orjson.dumps(error), {"content-type": "application/json"})


def rpc_error(code: int, message: str) -> Forced:
    """CALLR's JSON-RPC error object, as it answers a call it refuses."""
    return _rpc_error({"id": 1}, code, message)


def _date(text: str) -> datetime:
    return datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S")


@contextlib.asynccontextmanager
async def fake_callr() -> AsyncIterator[FakeCallr]:
    server = FakeCallr()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def sms_object(event: bytes) -> dict[str, Any]:
    """The v1 SMS object of a v1 event (tests/callr_events), as CALLR's API returns it."""
    data: dict[str, Any] = json.loads(event)["data"]
    return data
