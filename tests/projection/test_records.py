from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from receiver.app import create_app
from receiver.status import Status
from testkit.callr_events import ERROR_TEXT, lifecycle, v1_event, v2_event
from testkit.support import example, fetch, running, until_projected, with_fields
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

TOKEN_PATH = f"/webhooks/callr/{TEST_URL_TOKEN}"
C, P, S, Q, D = Status.CREATED, Status.PENDING, Status.SENT, Status.REMOTE_QUEUED, Status.DELIVERED


async def post(client: httpx.AsyncClient, *bodies: bytes) -> None:
    for body in bodies:
        response = await client.post(TOKEN_PATH, content=body)
        assert response.status_code == 200, response.text
    await until_projected(client)


async def message(url: str, sms_id: str) -> dict[str, Any]:
    (row,) = await fetch(url, "SELECT * FROM messages WHERE sms_id = $1", sms_id)
    return row


async def history(url: str, sms_id: str) -> list[tuple[str, str, datetime, bool]]:
    rows = await fetch(
        url,
        "SELECT before, after, at, derived FROM transitions WHERE sms_id = $1 ORDER BY at, id",
        sms_id,
    )
    return [(r["before"], r["after"], r["at"], r["derived"]) for r in rows]


def at(second: int) -> datetime:
    return datetime(2026, 3, 2, 16, 56, second, tzinfo=UTC)


async def test_the_v1_example_makes_a_message_and_its_history(
    make_settings: SettingsFactory, database_url: str
) -> None:
    async with running(create_app(make_settings())) as client:
        await post(client, example("v1-sms.mt.status_update"))
    record = await message(database_url, "0lwlnvlh")
    assert record["direction"] == "outbound"
    assert (record["from_number"], record["to_number"]) == ("SMS", "+33612345678")
    assert (record["text"], record["user_data"]) == ("Your code is 482913", "42")
    assert (record["encoding"], record["parts"], record["cost"]) == ("gsm", 1, Decimal("4.50"))
    assert (record["network"], record["nature"], record["error"]) == ("20801", "alerting", None)
    assert (record["status"], record["provider_status"]) == ("remote-queued", "REMOTE_QUEUED")
    assert record["status_at"] == at(7)
    assert (record["created_at"], record["sent_at"], record["delivered_at"]) == (at(4), at(6), None)
    assert record["anomaly"] is False
    assert record["first_seen_at"] == record["last_seen_at"]
    assert await history(database_url, "0lwlnvlh") == [
        ("created", "pending", at(4), False),
        ("pending", "sent", at(6), False),
        ("sent", "remote-queued", at(7), False),
    ]


@pytest.mark.parametrize(
    ("name", "sms_id", "direction", "status"),
    [
        ("v1-sms.mo", "zfuodf1o", "inbound", "delivered"),
        ("v2.sms.inbound.received", "in7fk2qa", "inbound", "delivered"),
        ("v2.sms.outbound.updated", "callrsid", "outbound", "delivered"),
    ],
)
async def test_each_example_makes_a_message(
    name: str,
    sms_id: str,
    direction: str,
    status: str,
    make_settings: SettingsFactory,
    database_url: str,
) -> None:
    async with running(create_app(make_settings())) as client:
        await post(client, example(name))
    record = await message(database_url, sms_id)
    assert (record["direction"], record["status"]) == (direction, status)
    assert len(await history(database_url, sms_id)) == 1


async def test_v1_and_v2_reports_of_one_sms_meet_on_one_message(
    make_settings: SettingsFactory, database_url: str
) -> None:
    steps = lifecycle(C, P, S, D)
    async with running(create_app(make_settings())) as client:
        await post(
            client,
            v1_event("v1-a", "MIXED001", steps[:3], millis=912),
            v2_event("v2-b", "mixed001", steps),
        )
    record = await message(database_url, "mixed001")
    assert record["status"] == "delivered"
    assert record["user_data"] == "42"  # from v1; the v2 event lacks it and it stays
    # The v1 steps carry milliseconds and the v2 ones do not: still one row each.
    assert [(b, a) for b, a, _, _ in await history(database_url, "mixed001")] == [
        ("created", "pending"),
        ("pending", "sent"),
        ("sent", "delivered"),
    ]


async def test_a_late_older_report_adds_history_but_does_not_move_the_status_back(
    make_settings: SettingsFactory, database_url: str
) -> None:
    steps = lifecycle(C, P, S, Q)
    async with running(create_app(make_settings())) as client:
        await post(client, v2_event("late-2", "late0001", steps, with_history=False))
        await post(client, v2_event("late-1", "late0001", steps[:2]))
    record = await message(database_url, "late0001")
    assert record["status"] == "remote-queued"
    assert record["status_at"] == steps[3].at
    assert [(b, a, d) for b, a, _, d in await history(database_url, "late0001")] == [
        ("created", "pending", False),
        ("pending", "remote-queued", True),
    ]


async def test_a_terminal_status_is_sticky_even_against_a_later_time(
    make_settings: SettingsFactory, database_url: str
) -> None:
    delivered = lifecycle(C, S, D)
    clock_skewed = lifecycle(C, S, start=delivered[-1].at, gap=60)
    async with running(create_app(make_settings())) as client:
        await post(client, v1_event("sticky-1", "sticky01", delivered))
        await post(client, v1_event("sticky-2", "sticky01", clock_skewed[1:], with_history=False))
    record = await message(database_url, "sticky01")
    assert (record["status"], record["provider_status"]) == ("delivered", "RECEIVED")
    assert record["anomaly"] is False


async def test_two_terminal_statuses_keep_the_later_and_flag_an_anomaly(
    make_settings: SettingsFactory, database_url: str
) -> None:
    failed = lifecycle(C, S, Status.FAILED)
    delivered_later = lifecycle(C, S, D, gap=3)
    async with running(create_app(make_settings())) as client:
        await post(client, v2_event("term-2", "term0001", delivered_later))
        await post(client, v2_event("term-1", "term0001", failed))
    record = await message(database_url, "term0001")
    assert (record["status"], record["anomaly"]) == ("delivered", True)
    afters = {a for _, a, _, _ in await history(database_url, "term0001")}
    assert {"failed", "delivered"} <= afters


async def test_an_error_keeps_its_text(make_settings: SettingsFactory, database_url: str) -> None:
    async with running(create_app(make_settings())) as client:
        await post(client, v1_event("err-1", "err00001", lifecycle(C, Status.ERROR)))
    record = await message(database_url, "err00001")
    assert (record["status"], record["error"]) == ("error", ERROR_TEXT)


async def test_a_gap_no_history_shows_is_derived_then_replaced_by_a_report(
    make_settings: SettingsFactory, database_url: str
) -> None:
    steps = lifecycle(C, P, S, D)
    async with running(create_app(make_settings())) as client:
        await post(client, v2_event("gap-1", "gap00001", steps[:3], with_history=False))
        await post(client, v2_event("gap-2", "gap00001", steps, with_history=False))
        derived = await history(database_url, "gap00001")
        await post(client, v2_event("gap-3", "gap00001", steps))
    assert derived == [("sent", "delivered", steps[3].at, True)]
    assert await history(database_url, "gap00001") == [
        ("created", "pending", steps[1].at, False),
        ("pending", "sent", steps[2].at, False),
        ("sent", "delivered", steps[3].at, False),
    ]


async def test_an_unknown_status_is_stored_raw_and_does_not_crash(
    make_settings: SettingsFactory, database_url: str
) -> None:
    document = json.loads(example("v2.sms.outbound.updated"))
    document["payload"].update(status="bounced", statusHistory=[])
    async with running(create_app(make_settings())) as client:
        response = await client.post(TOKEN_PATH, content=json.dumps(document).encode())
        await until_projected(client)
    assert response.json()["result"] == "stored"
    record = await message(database_url, "callrsid")
    assert (record["status"], record["provider_status"]) == ("unknown", "bounced")


async def test_a_repeated_event_is_projected_once(
    make_settings: SettingsFactory, database_url: str
) -> None:
    body = example("v1-sms.mt.status_update")
    async with running(create_app(make_settings())) as client:
        await post(client, body, with_fields(body, try_=1), body)
    assert len(await history(database_url, "0lwlnvlh")) == 3
    rows = await fetch(database_url, "SELECT count(*) AS n FROM observations")
    assert rows == [{"n": 1}]


async def test_events_of_many_messages_in_one_batch(
    make_settings: SettingsFactory, database_url: str
) -> None:
    import asyncio

    steps = lifecycle(C, P, S, D)
    bodies = [
        v1_event(f"batch-{n}-{k}", f"batch{n:03d}", steps[: k + 1])
        for n in range(40)
        for k in range(4)
    ]
    async with running(create_app(make_settings())) as client:
        answers = await asyncio.gather(*(client.post(TOKEN_PATH, content=b) for b in bodies))
        await until_projected(client)
    assert {a.status_code for a in answers} == {200}
    rows = await fetch(database_url, "SELECT status, count(*) AS n FROM messages GROUP BY status")
    assert rows == [{"status": "delivered", "n": 40}]
    steps_rows = await fetch(database_url, "SELECT count(*) AS n FROM transitions")
    assert steps_rows == [{"n": 40 * 3}]


async def test_a_status_seen_between_two_others_replaces_the_step_derived_across_it(
    make_settings: SettingsFactory, database_url: str
) -> None:
    steps = lifecycle(C, P, S, Q, D)
    async with running(create_app(make_settings())) as client:
        await post(client, v2_event("mid-s", "mid00001", steps[:3], with_history=False))
        await post(client, v2_event("mid-d", "mid00001", steps, with_history=False))
        across = await history(database_url, "mid00001")
        await post(client, v2_event("mid-q", "mid00001", steps[:4], with_history=False))
    assert across == [("sent", "delivered", steps[4].at, True)]
    assert await history(database_url, "mid00001") == [
        ("sent", "remote-queued", steps[3].at, True),
        ("remote-queued", "delivered", steps[4].at, True),
    ]


@pytest.mark.parametrize(
    "text",
    [
        'quotes " and \\ backslashes',
        "accents é, emoji 😀, line\nbreaks\tand \u2028 separators",
        "control \x01\x1f characters",
        "",
    ],
)
async def test_texts_reach_the_message_exactly_as_sent(
    make_settings: SettingsFactory, database_url: str, text: str
) -> None:
    # The reports travel to PostgreSQL as JSON: nothing may be lost in the escaping.
    body = json.loads(v2_event("txt-1", "txt00001", lifecycle(C, P)))
    body["payload"]["body"]["text"] = text
    body["payload"]["from"] = text or None
    async with running(create_app(make_settings())) as client:
        await post(client, json.dumps(body).encode())
    record = await message(database_url, "txt00001")
    assert record["text"] == text
    assert record["from_number"] == (text or None)


def _edited(event: bytes, **fields: Any) -> bytes:
    document = json.loads(event)
    document["data" if "data" in document else "payload"].update(fields)
    return json.dumps(document).encode()


def _merge_cases(sms: str) -> list[bytes]:
    """Reports that one batch merges: agreeing ones, and ones whose texts differ."""
    steps = lifecycle(C, P, S, D)
    failed = lifecycle(C, P, S, Status.FAILED)
    return [
        # v1 carries user_data, v2 does not: one record.
        v1_event(f"{sms}-a1", f"{sms}a", steps[:3]),
        v2_event(f"{sms}-a2", f"{sms}a", steps, with_history=False),
        # Texts the database's collation orders (not Python), two terminal statuses.
        _edited(v1_event(f"{sms}-b1", f"{sms}b", steps[:3]), text="Zebra"),
        _edited(v2_event(f"{sms}-b2", f"{sms}b", steps), body={"text": "apple"}, network=None),
        _edited(v1_event(f"{sms}-b3", f"{sms}b", failed), text="Zebra", network=""),
        # One status under two provider names, at one time.
        _edited(v1_event(f"{sms}-c1", f"{sms}c", steps), status="RECEIVED"),
        _edited(v1_event(f"{sms}-c2", f"{sms}c", steps), status="DELIVERED"),
    ]


async def test_one_batch_or_one_event_at_a_time_makes_the_same_records(database_url: str) -> None:
    """A batch merges each SMS's reports before the database sees them: the merge must
    not change what the database would have made of them one by one."""
    import asyncpg

    from receiver.callr.envelope import Envelope, parse_envelope
    from receiver.projection.records import project
    from receiver.reports import Report

    def reports(prefix: str) -> list[Report]:
        made = []
        for n, body in enumerate(_merge_cases(prefix)):
            parsed = parse_envelope(body)
            assert isinstance(parsed, Envelope), parsed
            assert parsed.sms is not None
            received = datetime(2026, 3, 2, 17, 0, n, tzinfo=UTC)
            made.append(Report(parsed.event_id, received, parsed.emitted_at, parsed.sms))
        return made

    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await project(conn, reports("one"))
        for report in reports("each"):
            async with conn.transaction():
                await project(conn, [report])
    finally:
        await conn.close()
    for table in ("SELECT * FROM messages", "SELECT * FROM observations", _TRANSITIONS):
        rows = await fetch(database_url, table)
        by_batch = [_unprefixed(row, "one") for row in rows if row["sms_id"].startswith("one")]
        by_event = [_unprefixed(row, "each") for row in rows if row["sms_id"].startswith("each")]
        assert by_batch, table
        assert sorted(by_batch, key=repr) == sorted(by_event, key=repr), table
    merged = {r["sms_id"]: r for r in await fetch(database_url, "SELECT * FROM messages")}
    assert (merged["onea"]["user_data"], merged["onea"]["status"]) == ("42", "delivered")
    assert (merged["oneb"]["anomaly"], merged["oneb"]["network"]) == (True, "20801")
    assert merged["onec"]["provider_status"] == "RECEIVED"


_TRANSITIONS = "SELECT sms_id, before, after, at, derived, event_id FROM transitions"


def _unprefixed(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {
        k: v.replace(prefix, "", 1) if isinstance(v, str) and k in ("sms_id", "event_id") else v
        for k, v in row.items()
    }
