"""Authenticated hostile events against a real `receiver serve`: none can stop the projection.

Each hostile event is answered below 500 and stored; the normal traffic sent after
them is projected and its reply forwarded within seconds; nothing is left pending,
and the log is quiet afterwards. And a backlog of large events is drained by a
worker whose memory stays bounded.
"""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from receiver.callr.sms import MAX_NETWORK, MAX_NUMBER, MAX_STATUS, MAX_TEXT, MAX_USER_DATA
from testkit.callr_events import mo_event, mt_event
from testkit.handler_server import handler_server, wait_for
from testkit.support import example, fetch
from tests.forwarding.conftest import register
from tests.reliability.conftest import Receiver
from tests.reliability.test_hostile_input import sign

pytestmark = pytest.mark.reliability

SIZES = {"3 KB": 3 * 1024, "100 KB": 100 * 1024}
# The fields each type's SMS projects, with the parser's bound for each.
V1_FIELDS = {
    "user_data": MAX_USER_DATA,
    "network": MAX_NETWORK,
    "from": MAX_NUMBER,
    "to": MAX_NUMBER,
    "status": MAX_STATUS,
    "text": MAX_TEXT,
}
V2_FIELDS = {**V1_FIELDS, "error": 1000}
TYPES = {
    "v1-sms.mo": ("data", V1_FIELDS),
    "v1-sms.mt.status_update": ("data", {**V1_FIELDS, "status_error": 1000}),
    "v2.sms.inbound.received": ("payload", V2_FIELDS),
    "v2.sms.outbound.updated": ("payload", V2_FIELDS),
}


def _document(example_name: str, event_id: str) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(orjson.loads(example(example_name)))
    document["event_id" if "event_id" in document else "id"] = event_id
    return document


def _nested(depth: int) -> bytes:
    """JSON nested `depth` arrays deep (written out: orjson writes 254 levels at most)."""
    return b"[" * depth + b'"bottom"' + b"]" * depth


def hostile() -> Iterator[tuple[str, bytes, int]]:
    """(what, body, the status expected) for every hostile event."""
    for name, (holder, fields) in TYPES.items():
        for field, bound in fields.items():
            for size_name, size in SIZES.items():
                document = _document(name, f"h-{name}-{field}-{size_name}")
                target = document[holder]
                if field == "text" and holder == "payload":
                    target = target.setdefault("body", {})
                target[field] = "7" * size
                expected = 200 if size <= bound else 400
                yield f"{name} {field} {size_name}", orjson.dumps(document), expected
        for depth in (300, 600, 1000):
            document = _document(name, f"h-{name}-deep-{depth}")
            document[holder]["extra"] = "DEEP"
            body = orjson.dumps(document).replace(b'"DEEP"', _nested(depth))
            yield f"{name} nested {depth}", body, 400
        document = _document(name, f"h-{name}-nul")
        document[holder]["user_data"] = "a\x00b"
        yield f"{name} NUL in user_data", orjson.dumps(document), 400
        surrogate = orjson.dumps(_document(name, f"h-{name}-surrogate"))
        surrogate = surrogate.replace(b'"type"', b'"lone":"\\ud800x","type"', 1)
        yield f"{name} lone surrogate", surrogate, 400
    yield "a whole body nested 1000 deep", _nested(1000), 400


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[Receiver]:
    receiver = Receiver(
        database_url,
        tmp_path,
        RECEIVER_DISPATCHER="true",
        RECEIVER_DISPATCH_POLL_INTERVAL="0.2",
        RECEIVER_PROJECTOR_POLL_INTERVAL="0.2",
    )
    try:
        yield receiver
    finally:
        receiver.stop()


async def post(client: httpx.AsyncClient, url: str, body: bytes) -> httpx.Response:
    return await client.post(
        url,
        content=body,
        headers={"content-type": "application/json", "x-callr-hmacsignature": sign(body)},
    )


async def test_no_hostile_event_stops_the_projection(service: Receiver, database_url: str) -> None:
    async with handler_server() as handler, httpx.AsyncClient(timeout=30) as client:
        await register(database_url, user_data="shop-7", url=handler.url("/shop"))
        await asyncio.to_thread(service.start)

        table = list(hostile())
        for n, (what, body, expected) in enumerate(table):
            answer = await post(client, service.webhook, body)
            assert answer.status_code == expected, (what, answer.text)
            assert answer.json()["event_id"], what
            if expected == 400:
                assert answer.json()["stored"] is True, what
            # Each followed by normal traffic.
            normal = mt_event(f"normal-{n}", f"NORMAL{n:03d}", to="+33611110000")
            assert (await post(client, service.webhook, normal)).status_code == 200
        events = await fetch(database_url, "SELECT count(*) AS n FROM events")
        assert events == [{"n": 2 * len(table)}]

        # Normal traffic behind them: an MT sent for shop-7, and the reply to it (from a
        # number none of the examples uses).
        mt = mt_event("after-mt", "AFTER1", to="+33699887766", user_data="shop-7")
        mo = mo_event("after-mo", "AFTER2", sender="+33699887766")
        assert (await post(client, service.webhook, mt)).status_code == 200
        assert (await post(client, service.webhook, mo)).status_code == 200
        await wait_for(lambda: len(handler.on("/shop")) == 1, seconds=10)
        assert handler.on("/shop")[0].json["event_id"] == "after-mo"

    assert await fetch(database_url, "SELECT 1 FROM projection_pending") == []
    projected = await fetch(
        database_url, "SELECT count(*) AS n FROM messages WHERE sms_id LIKE 'normal%'"
    )
    assert projected == [{"n": len(table)}]
    # Every hostile event the parser took was applied: none had to be parked.
    parked = await fetch(database_url, "SELECT 1 FROM events WHERE reason LIKE '%applied%'")
    assert parked == []
    # Quiet afterwards: nothing more is written while no traffic comes.
    size = service.log.stat().st_size
    await asyncio.sleep(3)
    log = service.log.read_text()
    assert service.log.stat().st_size == size
    assert "Traceback" not in log
    assert "projector_batch_failed" not in log


LARGE_EVENTS = 300
LARGE_BYTES = 900 * 1024
MEMORY_CEILING = 250 * 1024 * 1024


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory, as the kernel counted it (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc: not Linux?")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_a_backlog_of_large_events_is_drained_in_bounded_memory(
    database_url: str, tmp_path: Path
) -> None:
    # Stored by a serve process that does not project; drained by a worker.
    storing = Receiver(database_url, tmp_path, RECEIVER_PROJECTOR="false")
    await asyncio.to_thread(storing.start)
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            for n in range(LARGE_EVENTS):
                document = orjson.loads(mo_event(f"large-{n}", f"LARGE{n}", sender="+33600000007"))
                document["data"]["padding"] = os.urandom(LARGE_BYTES // 2).hex()
                answer = await post(client, storing.webhook, orjson.dumps(document))
                assert answer.status_code == 200, answer.text
    finally:
        await asyncio.to_thread(storing.stop)
    pending = await fetch(database_url, "SELECT count(*) AS n FROM projection_pending")
    assert pending == [{"n": LARGE_EVENTS}]

    env = {**storing.env, "RECEIVER_PROJECTOR": "true"}
    with (tmp_path / "worker.log").open("wb") as sink:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "receiver", "worker", env=env, stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + 120
        conn = await asyncpg.connect(database_url)
        try:
            while await conn.fetchval("SELECT count(*) FROM projection_pending"):
                assert worker.returncode is None, (tmp_path / "worker.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "the backlog was not drained in 120 s"
                await asyncio.sleep(0.2)
            messages = await conn.fetchval("SELECT count(*) FROM messages")
        finally:
            await conn.close()
        peak = _peak_rss(worker.pid)
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await worker.wait()
    assert messages == LARGE_EVENTS
    assert peak < MEMORY_CEILING, f"the worker peaked at {peak / 2**20:.0f} MiB"
