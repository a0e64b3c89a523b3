"""`POST /webhooks/callr[/{token}]`: read, authenticate, parse, store, and only then answer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver import metrics
from receiver.callr.envelope import HANDLED_TYPES, parse_envelope
from receiver.callr.signature import HEADER as SIGNATURE_HEADER
from receiver.http import JSONResponse, error_response, whole_number
from receiver.ingest.auth import WebhookAuth
from receiver.ingest.recent import MinuteCounts
from receiver.ingest.subscriptions import SubscriptionWatch
from receiver.ingest.writer import DatabaseUnavailable, GroupCommitWriter, Overloaded
from receiver.logging import RequestLog
from receiver.projection.store import Incoming, Outcome, Result

log = structlog.get_logger("receiver.webhook")
# The line of every request.
request_log = RequestLog("receiver.webhook")
_requests = metrics.children(metrics.WEBHOOKS)
_deliveries = metrics.children(metrics.DELIVERIES)

# Kept with each delivery: what identifies the sender and what a replay must resend.
KEPT_HEADERS = ("x-callr-eventid", SIGNATURE_HEADER, "user-agent", "content-type")
_MAX_HEADER_CHARS = 1024


class _TooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """The webhook route, configured once; the writer comes from the lifespan state."""

    auth: WebhookAuth
    max_body_bytes: int
    retry_after: int
    # Refused requests per minute, for the console's chart.
    refusals: MinuteCounts = field(default_factory=MinuteCounts)
    subscriptions: SubscriptionWatch = field(default_factory=SubscriptionWatch)

    async def receive(self, request: Request) -> Response:
        """Answer one CALLR delivery; a 2xx only once its event is committed."""
        started = time.perf_counter()
        headers = _headers_read(request)
        rejection = self._precheck(request, headers)
        if rejection is not None:
            return rejection
        try:
            body = await _read_body(request, self.max_body_bytes)
        except _TooLarge:
            return self._refuse(request, 413, f"body is larger than {self.max_body_bytes} bytes")
        except ClientDisconnect:
            log.info("webhook_client_gone", client=_client(request))
            _requests("incomplete", "none").inc()
            return error_response(400, "the client closed the connection before the body ended")
        check = self.auth.signature
        if check is not None and not check.verify(body, headers.get(SIGNATURE_HEADER)):
            return self._refuse(request, 401, "signature is missing or does not match the body")
        item = Incoming(
            parsed=parse_envelope(body),
            body=body,
            received_at=datetime.now(UTC),
            headers=_kept_headers(headers),
            remote_addr=_client(request),
        )
        # The lifespan's state read from the scope: Starlette's `request.state` and
        # `request.client` build an object each, 3.5 us a request between them.
        state = request.scope["state"]
        response, outcome = await self._store(state["writer"], item)
        self._log(item, response, outcome, started)
        if outcome is not None:
            self.subscriptions.seen(item.parsed.subscription, state["pool"])
        return response

    def _precheck(self, request: Request, headers: dict[str, str]) -> Response | None:
        """The checks that need no body: the URL token, basic auth, the declared length."""
        if self.auth.url_token is not None and not self.auth.token_matches(
            request.path_params.get("token", "")
        ):
            _requests("unknown_url", "none").inc()
            self.refusals.add()
            return error_response(404, "Not Found")
        declared = whole_number(headers.get("content-length"))
        if declared is not None and declared > self.max_body_bytes:
            return self._refuse(request, 413, f"body is larger than {self.max_body_bytes} bytes")
        if self.auth.basic_credentials is not None and not self.auth.basic_matches(
            headers.get("authorization")
        ):
            response = self._refuse(request, 401, "basic authentication failed")
            response.headers["www-authenticate"] = 'Basic realm="receiver"'
            return response
        return None

    async def _store(
        self, writer: GroupCommitWriter, item: Incoming
    ) -> tuple[Response, Outcome | None]:
        try:
            outcome = await writer.submit(item)
        except (DatabaseUnavailable, Overloaded, TimeoutError) as error:
            reason = {
                DatabaseUnavailable: "the database is unavailable",
                Overloaded: "the receiver is overloaded",
            }.get(type(error), "the database did not commit in time")
            return self._unavailable(reason), None
        if outcome.result is Result.INVALID:
            # A body that is not an event, or an event the database refused (a value
            # out of its range): kept raw either way, and the reason said.
            body = {"error": outcome.reason, "event_id": outcome.event_id, "stored": True}
            return JSONResponse(body, status_code=400), outcome
        return JSONResponse({"result": outcome.result.value, "event_id": outcome.event_id}), outcome

    def _unavailable(self, reason: str) -> Response:
        return error_response(
            503, f"{reason}; retry later", headers={"retry-after": str(self.retry_after)}
        )

    def _refuse(self, request: Request, status: int, reason: str) -> Response:
        log.warning("webhook_rejected", status=status, reason=reason, client=_client(request))
        _requests(_REFUSED.get(status, str(status)), "none").inc()
        self.refusals.add()
        # Past the limit, the rest of the body is not worth reading on this connection:
        # it closes, lingering (receiver.cli.http_protocol) so that the client reads this.
        headers = {"connection": "close"} if status == 413 else None
        return error_response(status, reason, headers=headers)

    def _log(
        self, item: Incoming, response: Response, outcome: Outcome | None, started: float
    ) -> None:
        parsed = item.parsed
        elapsed = time.perf_counter() - started
        result = outcome.result.value if outcome else "unavailable"
        _requests(result, parsed.type if parsed.type in HANDLED_TYPES else "other").inc()
        metrics.ACK_SECONDS.observe(elapsed)
        if outcome is not None:
            duplicate = outcome.result is Result.DUPLICATE
            _deliveries("duplicate" if duplicate else "new").inc()
            if parsed.attempt:
                _deliveries("retry").inc()
            if outcome.conflict:
                _deliveries("conflict").inc()
        fields: dict[str, object]
        if outcome is None:
            level, fields = "warning", {}
        elif outcome.result is Result.INVALID:
            level, fields = "warning", {"reason": outcome.reason}
        elif outcome.conflict:
            level, fields = "warning", {"conflict": True, "new_delivery": outcome.new_delivery}
        else:
            level, fields = "info", {"new_delivery": outcome.new_delivery}
        fields["event_id"] = item.key
        fields["type"] = parsed.type
        fields["try"] = parsed.attempt
        fields["status"] = response.status_code
        fields["result"] = result
        fields["latency_ms"] = round(elapsed * 1000, 2)
        fields["client"] = item.remote_addr
        request_log.line(level, "webhook", fields)


class WebhookLane:
    """Pure ASGI middleware: a POST to the webhook goes straight to its endpoint.

    Every other request, and any other method on the webhook's path (a 405), goes
    on through the app's router. The layers skipped (the router, the exception
    middleware, the response wrappers) have nothing to do for this route: the
    endpoint answers every error itself, and the app's error middleware, around
    this one, still turns a bug into a 500 without a trace.
    """

    def __init__(
        self, app: ASGIApp, *, endpoint: WebhookEndpoint, path: str, with_token: bool
    ) -> None:
        self.app = app
        self.endpoint = endpoint
        self.path = path
        self.prefix = path + "/"
        self.with_token = with_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            params = self._match(scope)
            if params is not None:
                scope["path_params"] = params
                response = await self.endpoint.receive(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _match(self, scope: Scope) -> dict[str, str] | None:
        """The path parameters when the request's path is the webhook's, else None."""
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if not self.with_token:
            return {} if path == self.path else None
        if path.startswith(self.prefix):
            token = path[len(self.prefix) :]
            if token and "/" not in token:
                return {"token": token}
        return None


# What a refusal counts as in receiver_webhook_requests.
_REFUSED = {401: "unauthorized", 413: "too_large"}


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, from the ASGI messages themselves: Starlette's `Request.stream`, an
    async generator, cost 3 us a request more for the one message a webhook takes."""
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# The headers the endpoint reads: the ones it keeps and the ones it checks.
_READ_HEADERS = frozenset(
    name.encode("latin-1") for name in (*KEPT_HEADERS, "content-length", "authorization")
)


def _headers_read(request: Request) -> dict[str, str]:
    """The headers the endpoint reads, in one pass over the request's (the first of a
    repeated name, as Starlette's `Headers.get`): a lookup each through `Headers`
    scans them all again, a twentieth of the request's time."""
    found: dict[str, str] = {}
    for name, value in request.scope["headers"]:
        if name in _READ_HEADERS:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def _kept_headers(headers: dict[str, str]) -> dict[str, str]:
    return {
        name: headers[name][:_MAX_HEADER_CHARS].replace("\x00", "")
        for name in KEPT_HEADERS
        if name in headers
    }


def _client(request: Request) -> str | None:
    client = request.scope.get("client")
    return client[0] if client else None
