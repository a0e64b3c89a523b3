"""A fake CALLR API on loopback, built from the shapes CALLR documents (docs/callr-api.md).

JSON-RPC 2.0 at `/json-rpc/v1.1/` (`webhooks.subscribe`), REST v1.1 at
`/rest/v1.1/sms` (a list by type and dates) and `/rest/v1.1/sms/<hash>`, all behind
basic auth. `forced` answers come first, one per request, to play CALLR's failures.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn

from tests.forwarding.handler_server import serve_on_loopback, stop_serving

LOGIN = "api-login"
PASSWORD = "api-password-7d1f"


@dataclass
class Forced:
    """One scripted answer: status, headers, body, and a wait before it is sent."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


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
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in answer.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    def _answer(
        self, method: str, path: str, query: dict[str, str], body: bytes, headers: dict[str, str]
    ) -> Forced:
        if self.forced:
            return self.forced.pop(0)
        expected = "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
        if headers.get("authorization") != expected:
            return _rest(401, "error", {"code": 401, "message": "Authentication failed"})
        if method == "POST" and path == "/json-rpc/v1.1/":
            return self._rpc(orjson.loads(body))
        if method == "GET" and path == "/rest/v1.1/sms":
            return self._list(query)
        if method == "GET" and path.startswith("/rest/v1.1/sms/"):
            found = self.sms.get(path.rsplit("/", 1)[1])
            if found is None:
                return _rest(404, "error", {"code": 404, "message": "SMS not found"})
            return _rest(200, "success", found)
        return _rest(404, "error", {"code": 404, "message": "no such endpoint"})

    def _rpc(self, request: dict[str, Any]) -> Forced:
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
