"""Hostile input against a real `receiver serve`: a 4xx with a JSON error or a 2xx, never a 500.

Whatever passed authentication is stored (as `invalid` when it is not an event),
and the service keeps answering valid traffic throughout.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testkit.support import example
from tests.reliability.conftest import SECRET, OwnPostgres, Receiver

pytestmark = pytest.mark.reliability

VALID = orjson.loads(example("v2.sms.outbound.updated"))


def sign(body: bytes, secret: str = SECRET, digest: Any = hashlib.sha256) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, digest).digest()).decode()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receiver, str]]:
    folder = tmp_path_factory.mktemp("hostile")
    postgres = OwnPostgres(folder / "own")
    receiver = Receiver(postgres.url, folder, RECEIVER_MAX_BODY_BYTES="1048576")
    try:
        receiver.start()
        yield receiver, postgres.url
    finally:
        receiver.stop()
        postgres.close()


OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


class Client:
    """Sends signed (or not) bodies and checks each answer's shape; counts what it saw."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.http = httpx.Client(base_url=receiver.url, timeout=30)
        OPEN.append(self.http)
        self.kept: set[str] = set()
        self.statuses: dict[int, int] = {}

    def post(self, body: bytes, *, signature: str | None = "sign", **headers: str) -> int:
        if signature == "sign":
            signature = sign(body)
        if signature is not None:
            headers["x-callr-hmacsignature"] = signature
        response = self.http.post("/webhooks/callr", content=body, headers=headers)
        return self.check(response)

    def check(self, response: httpx.Response) -> int:
        status = response.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status < 500 or status == 503, (status, response.text[:500])
        assert response.headers["content-type"].startswith("application/json"), response.text
        answer = response.json()
        if status >= 400:
            assert isinstance(answer.get("error"), str), answer
            assert "Traceback" not in response.text
        if status in (200, 400) and "event_id" in answer:
            self.kept.add(answer["event_id"])
        return status

    def still_serves(self) -> None:
        body = orjson.dumps({**VALID, "id": f"alive-{time.monotonic_ns()}"})
        assert self.post(body) == 200


def stored(url: str) -> dict[str, str]:
    import asyncio

    async def read() -> dict[str, str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT event_id, state FROM events")
            return {r["event_id"]: r["state"] for r in rows}
        finally:
            await conn.close()

    return asyncio.run(read())


def leaves(document: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value in a JSON document."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield (*path, key)
            yield from leaves(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield (*path, index)
            yield from leaves(value, (*path, index))


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    changed = copy.deepcopy(document)
    target = changed
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


WRONG: list[Any] = [
    None,
    0,
    -1,
    2**70,
    1.5e308,
    "",
    "x" * 5000,
    [],
    {},
    True,
    "2026-13-45T99:99:99Z",
]


def test_wrong_types_and_missing_fields_everywhere(service: tuple[Receiver, str]) -> None:
    receiver, url = service
    client = Client(receiver)
    paths = list(leaves(VALID))
    for n, path in enumerate(paths):
        for m, value in enumerate([*WRONG, KeyError]):
            document = replaced(VALID, path, value)
            if isinstance(document, dict) and path != ("id",):
                document["id"] = f"wrong-{n}-{m}"
            client.post(json.dumps(document).encode())
        client.still_serves()
    # Extra fields are no harm.
    assert client.post(orjson.dumps({**VALID, "id": "extra", "extra": {"deep": [1, 2]}})) == 200
    kept = stored(url)
    assert client.kept <= set(kept)
    assert set(client.statuses) <= {200, 400}, client.statuses
    print(f"hostile fields: {sum(client.statuses.values())} requests, {client.statuses}")


def test_bodies_that_are_not_events(service: tuple[Receiver, str]) -> None:
    receiver, url = service
    client = Client(receiver)
    bodies = {
        "invalid utf-8": b'{"id": "\xff\xfe", "type": "v2.sms.outbound.updated"}',
        "10,000 deep": b"[" * 10_000 + b"]" * 10_000,
        "10,000 deep objects": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        "huge number": b'{"id": "n1", "try": 1' + b"0" * 5000 + b', "type": "x"}',
        "nan": b'{"id": "n2", "try": NaN}',
        "empty": b"",
        "not an object": b'"just a string"',
        "null bytes": b'{"id": "n3\x00", "type": "v2.sms.outbound.updated"}',
        "almost the limit": orjson.dumps({**VALID, "id": "big", "pad": "x" * 1_000_000}),
    }
    for name, body in bodies.items():
        status = client.post(body)
        assert status in (200, 400), (name, status)
    assert client.post(b"x" * (1_048_576 + 1)) == 413
    client.still_serves()
    assert client.kept <= set(stored(url))
    invalid = {k for k, v in stored(url).items() if v == "invalid"}
    assert len(invalid) >= 6


def test_signatures_that_do_not_match(service: tuple[Receiver, str]) -> None:
    receiver, _ = service
    client = Client(receiver)
    body = orjson.dumps({**VALID, "id": "signed"})
    good = sign(body)
    for name, signature in {
        "missing": None,
        "wrong secret": sign(body, "another-secret"),
        "truncated": good[:20],
        "sha512": sign(body, digest=hashlib.sha512),
        "sha1": sign(body, digest=hashlib.sha1),
        "not base64": "%%%%",
        "empty": "",
        "of another body": sign(body + b" "),
        "enormous": "A" * 50_000,
    }.items():
        assert client.post(body, signature=signature) in (400, 401, 431), name
    # Repeated: one right and one wrong signature header is not a right one.
    response = client.http.post(
        "/webhooks/callr",
        content=body,
        headers=[("x-callr-hmacsignature", "bm9wZQ=="), ("x-callr-hmacsignature", good)],
    )
    assert client.check(response) in (200, 401)
    assert client.post(body, signature=good) == 200
    client.still_serves()


def raw(receiver: Receiver, data: bytes, *, linger: float = 0.0) -> bytes:
    """Send raw bytes over one connection; what came back before it closed (or 10 s)."""
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
        sock.sendall(data)
        if linger:
            time.sleep(linger)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_lying_lengths_slow_senders_and_enormous_headers(service: tuple[Receiver, str]) -> None:
    receiver, url = service
    client = Client(receiver)
    body = orjson.dumps({**VALID, "id": "raw-1"})
    head = (
        "POST /webhooks/callr HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"x-callr-hmacsignature: {sign(body)}\r\n"
    ).encode()
    # A declared length longer than the body, then the client stops sending.
    short = raw(receiver, head + f"content-length: {len(body) + 500}\r\n\r\n".encode() + body)
    assert b" 500 " not in short.split(b"\r\n")[0]
    # A declared length shorter than the body: the rest is not an event.
    long = raw(receiver, head + f"content-length: {len(body) - 40}\r\n\r\n".encode() + body)
    assert long.startswith(b"HTTP/1.1 4"), long[:200]
    # A declared length above the limit: refused before the body is read.
    huge = raw(receiver, head + b"content-length: 99999999\r\n\r\n")
    assert huge.startswith(b"HTTP/1.1 413"), huge[:200]
    # Enormous and repeated headers.
    big = raw(receiver, head + b"x-padding: " + b"p" * 200_000 + b"\r\ncontent-length: 2\r\n\r\n{}")
    assert not big.startswith(b"HTTP/1.1 5"), big[:200]
    many = b"".join(f"x-h{i}: {i}\r\n".encode() for i in range(5000))
    lots = raw(receiver, head + many + b"content-length: 2\r\n\r\n{}")
    assert not lots.startswith(b"HTTP/1.1 5"), lots[:200]

    # A body sent a byte at a time (about 3 s), while other traffic flows.
    slow_body = orjson.dumps({**VALID, "id": "slow-1"})
    answers: list[bytes] = []

    def slow() -> None:
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as sock:
            sock.sendall(
                head.replace(sign(body).encode(), sign(slow_body).encode())
                + f"content-length: {len(slow_body)}\r\n\r\n".encode()
            )
            for i in range(len(slow_body)):
                sock.sendall(slow_body[i : i + 1])
                time.sleep(3 / len(slow_body))
            answers.append(sock.recv(65536))

    thread = threading.Thread(target=slow)
    thread.start()
    started = time.monotonic()
    while thread.is_alive():
        client.still_serves()
        assert time.monotonic() - started < 20
    thread.join()
    assert answers, "the slow request got no answer"
    assert answers[0].startswith(b"HTTP/1.1 200"), answers
    kept = stored(url)
    assert kept.get("slow-1") == "processed"
    assert "raw-1" not in kept or kept["raw-1"] == "processed"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    document=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=30,
    ),
    raw_bytes=st.binary(max_size=300),
)
def test_arbitrary_json_and_bytes(
    service: tuple[Receiver, str], document: Any, raw_bytes: bytes
) -> None:
    receiver, _ = service
    client = Client(receiver)
    for body in (json.dumps(document).encode(), raw_bytes):
        assert client.post(body) in (200, 400)
    # With the keys of an event around what was generated.
    text = json.dumps(document)
    event = {**VALID, "id": f"h-{hashlib.sha256(text.encode()).hexdigest()}"}
    event["payload"] = {**VALID["payload"], "status": document}
    assert client.post(json.dumps(event).encode()) in (200, 400)


def test_the_service_is_alive_after_all_that(service: tuple[Receiver, str], tmp_path: Path) -> None:
    receiver, _url = service
    Client(receiver).still_serves()
    assert receiver.process is not None
    assert receiver.process.poll() is None
    assert "Traceback" not in receiver.log.read_text()
