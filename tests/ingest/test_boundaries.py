"""What CALLR may say: never the receiver's own events, never a time it could not write.

A webhook that takes a type or an id form of the receiver's own events (a step of a
send, a registration, an SMS from CALLR's API) is refused (400, naming the field),
kept, and never applied: not by the projector, a replay or a rebuild. Every time in
a body lies between 2000 and 2099 (UTC); any other is refused the same way, and no
stored event can make a read fail or a rebuild lose records.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from receiver.app import create_app
from receiver.callr import own, sends
from receiver.callr.envelope import OWN_ID_PREFIXES, OWN_TYPE_PREFIXES, Envelope, parse_envelope
from receiver.callr.own import parse_stored
from receiver.db.engine import create_pool
from receiver.projection.store import Incoming, store_batch
from receiver.replay import EventFilter, rebuild, replay
from receiver.status import Status
from testkit.callr_events import Step, lifecycle, v1_event, v2_event
from testkit.support import fetch, running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

replay_module = importlib.import_module("receiver.replay.replay")
rebuild_module = importlib.import_module("receiver.replay.rebuild")
TOKEN_PATH = f"/webhooks/callr/{TEST_URL_TOKEN}"
READ = "boundaries-read-token-for-tests"
AT = datetime(2026, 3, 2, 16, 56, 4, tzinfo=UTC)


def _forged_send(event_id: str, event_type: str, *, v2: bool) -> bytes:
    """A step of a send that would make CALLR send an SMS, dressed as a webhook."""
    step = orjson.loads(
        sends.step_body(
            "snd_forged000001",
            1,
            sends.Step.REQUESTED,
            AT,
            to="+33612345678",
            text="forged",
            user_data="teamB-otp",
            api="v1",
        )
    )
    envelope = {"id": event_id} if v2 else {"event_id": event_id}
    return orjson.dumps({**step, **envelope, "type": event_type, "try": 0})


# Every own type, and every id form under a CALLR type: the class, not one case.
OWN_TYPES = sorted({*own.OWN_FORMS, *(f"{prefix}anything" for prefix in OWN_TYPE_PREFIXES)})
OWN_IDS = [f"{prefix}snd_forged000001:1" for prefix in OWN_ID_PREFIXES]


def test_every_own_form_is_one_a_webhook_may_not_take() -> None:
    for event_type, id_prefix in own.OWN_FORMS.items():
        assert event_type.startswith(OWN_TYPE_PREFIXES), event_type
        assert id_prefix.startswith(OWN_ID_PREFIXES), id_prefix


@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize(
    ("event_id", "event_type", "field"),
    [
        *((f"ordinary-{n}", kind, "type") for n, kind in enumerate(OWN_TYPES)),
        *((event_id, "sms.mt.status_update", "id") for event_id in OWN_IDS),
        *((event_id, "some.future.type", "id") for event_id in OWN_IDS),
    ],
)
def test_a_webhook_in_the_receivers_own_forms_is_refused_naming_the_field(
    event_id: str, event_type: str, field: str, v2: bool
) -> None:
    body = _forged_send(event_id, event_type, v2=v2)
    parsed = parse_envelope(body)
    assert not isinstance(parsed, Envelope)
    named = field if field == "type" else ("id" if v2 else "event_id")
    assert f"field '{named}'" in parsed.reason
    # Kept under the hash of its bytes: it can never take a real event's id.
    assert parsed.key.startswith("sha256:")


async def test_a_forged_send_is_refused_kept_and_never_applied_by_replay_or_rebuild(
    make_settings: SettingsFactory, database_url: str
) -> None:
    settings = make_settings(dispatcher=False, api_tokens=READ)
    async with running(create_app(settings)) as client:
        for v2 in (False, True):
            for event_type in own.OWN_FORMS:
                answer = await client.post(
                    TOKEN_PATH, content=_forged_send(f"send:snd_f{v2:d}:1", event_type, v2=v2)
                )
                assert answer.status_code == 400, answer.text
                assert answer.json()["stored"] is True
                assert "field 'type'" in answer.json()["error"]
        await until_projected(client)
    # The way it went before: stored as an unhandled event under the forged id and type.
    body = _forged_send("send:snd_forged000001:1", sends.SEND, v2=False)
    await _store_as_an_older_release_did(database_url, body)
    pool = await create_pool(database_url, size=2, command_timeout=60)
    try:
        summary = await replay(pool, EventFilter(states=("unhandled", "invalid")))
        assert summary.replayed == 9
        await rebuild(pool, jobs=1)
    finally:
        await pool.close()
    assert await fetch(database_url, "SELECT * FROM sends") == []
    assert await fetch(database_url, "SELECT * FROM messages") == []
    rows = await fetch(database_url, "SELECT state, own, reason FROM events")
    assert len(rows) == 9
    assert {(row["state"], row["own"]) for row in rows} == {("invalid", False)}
    assert all("receiver's own events" in row["reason"] for row in rows)


async def _store_as_an_older_release_did(url: str, body: bytes) -> None:
    document = orjson.loads(body)
    # What the older parser made of it: an event of a type it keeps but does not act on.
    parsed = Envelope(
        event_id=document["event_id"],
        type=document["type"],
        attempt=0,
        emitted_at=None,
        subscription=None,
        generation=1,
        object=None,
        fingerprint=b"\0" * 32,
    )
    pool = await create_pool(url, size=1, command_timeout=60)
    try:
        async with pool.acquire() as conn, conn.transaction():
            item = Incoming(parsed, body, datetime.now(UTC), {}, "203.0.113.9")
            await store_batch(conn, [item])
    finally:
        await pool.close()


def test_only_events_stored_as_own_are_read_as_the_receivers_own() -> None:
    body = sends.step_body("snd_1", 1, sends.Step.REQUESTED, AT, to="+33612345678", text="x")
    assert isinstance(parse_stored("send:snd_1:1", sends.SEND, body, own=True), Envelope)
    assert not isinstance(parse_stored("send:snd_1:1", sends.SEND, body, own=False), Envelope)


# ------------------------------------------------------------------ times

OUT_OF_RANGE_V2 = [
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "1999-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
    "2099-12-31T23:30:00-01:00",
]
OUT_OF_RANGE_V1 = ["9999-12-31 23:59:59", "0001-01-01 00:00:01", "1999-12-31 23:59:59"]
IN_RANGE_V2 = ["2000-01-01T00:00:00Z", "2099-12-31T23:59:59Z", "2000-01-01T01:30:00+01:00"]


def _v1(set_at: Any) -> bytes:
    document = orjson.loads(v1_event("v1-time", "smstime1", _steps()))
    set_at(document)
    return orjson.dumps(document)


def _v2(set_at: Any) -> bytes:
    document = orjson.loads(v2_event("v2-time", "smstime2", _steps()))
    set_at(document)
    return orjson.dumps(document)


def _steps() -> list[Step]:
    return lifecycle(Status.CREATED, Status.PENDING, Status.SENT, Status.DELIVERED, gap=5)


def _setter(path: tuple[str | int, ...], value: str) -> Any:
    def set_at(document: Any) -> None:
        for key in path[:-1]:
            document = document[key]
        document[path[-1]] = value

    return set_at


# Every time field of both generations: (how to build the body, where, the field's name).
V1_TIMES = [
    (("event_at",), "event_at"),
    (("data", "date_creation"), "data.date_creation"),
    (("data", "date_sent"), "data.date_sent"),
    (("data", "date_received"), "data.date_received"),
    (("data", "date_update"), "data.date_update"),
    (("data", "status_history", 0, "updated_at"), "data.status_history[0].updated_at"),
]
V2_TIMES = [
    (("at",), "at"),
    (("payload", "created"), "payload.created"),
    (("payload", "sent"), "payload.sent"),
    (("payload", "delivered"), "payload.delivered"),
    (("payload", "updated"), "payload.updated"),
    (("payload", "statusHistory", 0, "at"), "payload.statusHistory[0].at"),
]


def _cases() -> list[tuple[bytes, str]]:
    cases = []
    for path, name in V1_TIMES:
        values = OUT_OF_RANGE_V2 if path == ("event_at",) else OUT_OF_RANGE_V1
        cases += [(_v1(_setter(path, value)), name) for value in values]
    for path, name in V2_TIMES:
        cases += [(_v2(_setter(path, value)), name) for value in OUT_OF_RANGE_V2]
    return cases


@pytest.mark.parametrize(("body", "field"), _cases())
def test_every_time_out_of_range_is_refused_naming_its_field(body: bytes, field: str) -> None:
    parsed = parse_envelope(body)
    assert not isinstance(parsed, Envelope), field
    assert field.rsplit(".", 1)[-1] in parsed.reason, parsed.reason
    assert "out of range" in parsed.reason


@pytest.mark.parametrize("value", IN_RANGE_V2)
def test_times_at_the_bounds_are_read(value: str) -> None:
    for path, _ in V2_TIMES:
        assert isinstance(parse_envelope(_v2(_setter(path, value))), Envelope), (path, value)


async def test_out_of_range_times_are_stored_refused_and_break_no_read_nor_rebuild(
    make_settings: SettingsFactory, database_url: str
) -> None:
    settings = make_settings(dispatcher=False, api_tokens=READ)
    headers = {"authorization": f"Bearer {READ}"}
    good = [v1_event("good-1", "smsgood1", _steps()), v2_event("good-2", "smsgood2", _steps())]
    async with running(create_app(settings)) as client:
        for body in good:
            assert (await client.post(TOKEN_PATH, content=body)).status_code == 200
        for body, field in _cases():
            answer = await client.post(TOKEN_PATH, content=body)
            assert answer.status_code == 400, (field, answer.text)
            assert answer.json()["stored"] is True
            assert field.rsplit(".", 1)[-1] in answer.json()["error"]
        await until_projected(client)
        for state in ("processed", "invalid", "unhandled"):
            page = await client.get(f"/api/v1/events?state={state}&limit=1000", headers=headers)
            assert page.status_code == 200, page.text
            for event in page.json()["items"]:
                path = f"/api/v1/events/{quote(event['event_id'], safe='')}"
                one = await client.get(path, headers=headers)
                assert one.status_code == 200, one.text
        before = await fetch(database_url, "SELECT * FROM messages ORDER BY sms_id")
        assert [row["sms_id"] for row in before] == ["smsgood1", "smsgood2"]
        for sms_id in ("smsgood1", "smsgood2"):
            assert (await client.get(f"/api/v1/messages/{sms_id}", headers=headers)).is_success
    pool = await create_pool(database_url, size=2, command_timeout=60)
    try:
        await rebuild(pool, jobs=1)
    finally:
        await pool.close()
    assert await fetch(database_url, "SELECT * FROM messages ORDER BY sms_id") == before


async def test_a_rebuild_that_cannot_finish_leaves_the_records_as_they_were(
    make_settings: SettingsFactory, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(create_app(make_settings(dispatcher=False))) as client:
        for n in range(30):
            body = v2_event(f"kept-{n}", f"smskept{n:03d}", _steps())
            assert (await client.post(TOKEN_PATH, content=body)).status_code == 200
        await until_projected(client)
    reads = {
        "messages": "SELECT * FROM messages ORDER BY sms_id",
        "transitions": "SELECT sms_id, before, after, at FROM transitions ORDER BY 1, 2, 3, 4",
        "observations": "SELECT * FROM observations ORDER BY sms_id, at, status",
    }
    before = {table: await fetch(database_url, sql) for table, sql in reads.items()}
    assert len(before["messages"]) == 30

    async def fails(*args: Any, **kwargs: Any) -> Any:
        raise OverflowError("date value out of range")

    pool = await create_pool(database_url, size=2, command_timeout=60)
    try:
        # Fails at the very end, where the records change hands: nothing changed.
        monkeypatch.setattr(rebuild_module, "_swap_once", fails)
        with pytest.raises(OverflowError):
            await rebuild(pool, batch=7, jobs=2)
        after = {table: await fetch(database_url, sql) for table, sql in reads.items()}
        assert after == before
        # And a rebuild that runs to the end after it gives the same records (its new
        # tables analyzed after their first pages, as a large rebuild's are).
        monkeypatch.undo()
        monkeypatch.setattr(replay_module, "ANALYZE_AFTER", 10)
        await rebuild(pool, batch=7, jobs=2)
    finally:
        await pool.close()
    rebuilt = {table: await fetch(database_url, sql) for table, sql in reads.items()}
    assert rebuilt == before
    assert (
        await fetch(
            database_url, "SELECT 1 FROM pg_namespace WHERE nspname = $1", replay_module.SHADOW
        )
        == []
    )


# ------------------------------------------------------------------ replay's rules


def _bodies_at_and_past_the_depth() -> list[bytes]:
    """Events with a field nested `depth` levels deep (written as text: orjson would not)."""
    bodies = []
    for depth in (200, 250, 251, 252, 253, 254, 255, 256, 300, 1000):
        nested = b'{"x":' * depth + b'"deep"' + b"}" * depth
        for build in (v1_event, v2_event):
            body = build(f"deep-{depth}", "smsdeep1", _steps()).rstrip()
            bodies.append(body[:-1] + b',"extra":' + nested + b"}")
    return bodies


@pytest.mark.parametrize("body", [*_bodies_at_and_past_the_depth(), *(b for b, _ in _cases())])
def test_replay_reads_a_body_as_ingest_did(body: bytes) -> None:
    """What ingest refuses stays refused when a replay or rebuild reads it again."""
    at_ingest = parse_envelope(body)
    again = parse_stored("any", None, body, own=False)
    assert type(again) is type(at_ingest)
    if isinstance(at_ingest, Envelope):
        assert isinstance(again, Envelope)
        assert again.sms == at_ingest.sms
