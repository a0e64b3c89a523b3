"""Subscribe, reconcile, backfill and registration against the fake CALLR and a real database."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from receiver import metrics
from receiver.app import create_app
from receiver.callr.api import CallrApi, CallrApiError
from receiver.db.engine import create_pool
from receiver.replay import EventFilter, rebuild, replay
from receiver.replay.callr import ReconcileSummary, backfill, reconcile
from receiver.status import Status
from testkit.callr_events import BASE_TIME, lifecycle, mo_event, mt_event, v1_event, v2_event
from testkit.fake_callr import LOGIN, PASSWORD, FakeCallr, Forced, fake_callr, rpc_error, sms_object
from testkit.support import fetch, running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.forwarding.conftest import register
from tests.replay.test_replay import projected, without_provenance

C, P, S, D = Status.CREATED, Status.PENDING, Status.SENT, Status.DELIVERED
HOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"
ADMIN = "admin-token-for-the-callr-tests"
READER = "read-token-for-the-callr-tests"
WINDOW = timedelta(days=7)
# Long after BASE_TIME: every SMS of the tests has been stuck for more than a day.
LATER = BASE_TIME + timedelta(days=30)


@pytest.fixture
async def callr() -> AsyncIterator[FakeCallr]:
    async with fake_callr() as server:
        yield server


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    pool = await create_pool(database_url, size=4, command_timeout=60)
    yield pool
    await pool.close()


async def reconcile_at(pool: Any, client: CallrApi, now: datetime) -> ReconcileSummary:
    """Reconcile as it would run at `now`: what has been stuck for more than a day."""
    return await reconcile(
        pool, client, older_than=timedelta(days=1), limit=10, routing_window=WINDOW, now=now
    )


def api(callr: FakeCallr) -> CallrApi:
    async def no_wait(seconds: float) -> None:
        return None

    return CallrApi(callr.url, LOGIN, PASSWORD, rate=100, timeout=1.0, retries=1, sleep=no_wait)


async def webhooks(make_settings: SettingsFactory, *bodies: bytes) -> None:
    async with running(create_app(make_settings(dispatcher=False))) as client:
        for body in bodies:
            answer = await client.post(HOOK, content=body)
            assert answer.status_code == 200, answer.text
        await until_projected(client)


async def message(url: str, sms_id: str) -> dict[str, Any]:
    rows = await fetch(url, "SELECT * FROM messages WHERE sms_id = $1", sms_id)
    assert rows, f"no message {sms_id}"
    return rows[0]


async def steps(url: str, sms_id: str) -> list[tuple[str, str]]:
    rows = await fetch(
        url, "SELECT before, after FROM transitions WHERE sms_id = $1 ORDER BY at", sms_id
    )
    return [(r["before"], r["after"]) for r in rows]


async def count(url: str, table: str) -> int:
    rows = await fetch(url, f"SELECT count(*) AS n FROM {table}")  # noqa: S608 (a test's table)
    return int(rows[0]["n"])


async def receiver_callr(
    database_url: str, callr: FakeCallr, *args: str, **env: str
) -> tuple[int, str, str]:
    """`receiver callr ARGS` as a process (the fake serves it from this loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver",
        "callr",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            **os.environ,
            "RECEIVER_DATABASE_URL": database_url,
            "RECEIVER_LOG_FORMAT": "json",
            **callr.environment(),
            **env,
        },
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# ---------------------------------------------------------------- subscribe


async def test_subscribe_keeps_what_callr_answers(database_url: str, callr: FakeCallr) -> None:
    code, out, err = await receiver_callr(
        database_url,
        callr,
        "subscribe",
        "--url",
        "https://hooks.example.com/webhooks/callr/abc",
        RECEIVER_CALLR_HMAC_SECRETS="the-signing-secret",
    )
    assert code == 0, err
    assert "2 subscription(s) made and kept (signed" in out
    assert [(h["event_type"], h["endpoint"]) for h in callr.webhooks] == [
        ("sms.mt.status_update", "https://hooks.example.com/webhooks/callr/abc"),
        ("sms.mo", "https://hooks.example.com/webhooks/callr/abc"),
    ]
    # CALLR signs with the receiver's secret: one command sets both ends up.
    assert callr.webhooks[0]["options"] == {
        "hmac_secret": "the-signing-secret",
        "hmac_algo": "SHA256",
    }
    kept = await fetch(database_url, "SELECT * FROM callr_subscriptions ORDER BY hash")
    assert [k["hash"] for k in kept] == ["HK000000", "HK000001"]
    assert "the-signing-secret" not in json.dumps([k["answer"] for k in kept])
    assert "the-signing-secret" not in out + err
    code, out, _ = await receiver_callr(database_url, callr, "subscriptions")
    assert code == 0
    assert "HK000000  sms.mt.status_update" in out
    assert "HK000001  sms.mo" in out


async def test_a_callr_error_on_subscribe_is_one_line_and_keeps_nothing(
    database_url: str, callr: FakeCallr
) -> None:
    callr.forced.append(rpc_error(22, "Invalid endpoint"))
    code, _, err = await receiver_callr(
        database_url,
        callr,
        "subscribe",
        "--url",
        "https://hooks.example.com/x",
        "--types",
        "sms.mo",
    )
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "receiver callr subscribe: CALLR refused webhooks.subscribe: Invalid endpoint (code 22)"
    )
    assert await count(database_url, "callr_subscriptions") == 0


async def test_v2_events_are_sent_to_callrs_portal_not_subscribed(
    database_url: str, callr: FakeCallr
) -> None:
    code, _, err = await receiver_callr(
        database_url,
        callr,
        "subscribe",
        "--url",
        "https://hooks.example.com/x",
        "--types",
        "sms.mo,v2.sms.outbound.updated",
    )
    assert code == 2
    assert "v2.sms.outbound.updated: v2 events are subscribed to in CALLR's portal" in err
    assert callr.asked == []


async def test_commands_without_credentials_say_which_settings(
    database_url: str, callr: FakeCallr
) -> None:
    code, _, err = await receiver_callr(
        database_url,
        callr,
        "reconcile",
        RECEIVER_CALLR_API_LOGIN="",
        RECEIVER_CALLR_API_PASSWORD="",
    )
    assert code == 1
    assert "set RECEIVER_CALLR_API_LOGIN and RECEIVER_CALLR_API_PASSWORD" in err


async def test_an_event_through_an_unknown_subscription_is_warned_of_once(
    make_settings: SettingsFactory,
    database_url: str,
    callr: FakeCallr,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conn_rows = (
        "INSERT INTO callr_subscriptions (hash, type, endpoint, answer) VALUES ($1, $2, $3, '{}')"
    )
    await fetch(database_url, conn_rows, "KNOWN001", "sms.mt.status_update", "https://x")
    before = metrics.UNKNOWN_SUBSCRIPTIONS._value.get()
    steps_ = lifecycle(C, S)
    async with running(create_app(make_settings(dispatcher=False))) as client:
        for n, hook in enumerate(["KNOWN001", "STRANGER", "STRANGER", "KNOWN001"]):
            body = v1_event(f"sub-{n}", f"sub{n:05d}", steps_, hook_hash=hook)
            assert (await client.post(HOOK, content=body)).status_code == 200
        await until_projected(client)
        await asyncio.sleep(0.2)  # the lookups run beside the answers
    assert metrics.UNKNOWN_SUBSCRIPTIONS._value.get() == before + 1
    warnings = [
        line for line in capsys.readouterr().out.splitlines() if "unknown_subscription" in line
    ]
    assert len(warnings) == 1
    assert "STRANGER" in warnings[0]


# ---------------------------------------------------------------- reconcile


async def test_a_stuck_sms_that_callr_says_was_delivered_is_delivered_once(
    make_settings: SettingsFactory, database_url: str, callr: FakeCallr, pool: Any
) -> None:
    await webhooks(make_settings, v1_event("w1", "stuck001", lifecycle(C, P, S)))
    assert (await message(database_url, "stuck001"))["status"] == "sent"
    callr.add(sms_object(v1_event("x", "stuck001", lifecycle(C, P, S, D))))
    async with api(callr) as client:
        summary = await reconcile_at(pool, client, LATER)
        assert (summary.changed, summary.unchanged, summary.unknown) == (1, 0, 0)
        record = await message(database_url, "stuck001")
        assert record["status"] == "delivered"
        assert await steps(database_url, "stuck001") == [
            ("created", "pending"),
            ("pending", "sent"),
            ("sent", "delivered"),
        ]
        events = await fetch(
            database_url, "SELECT event_id, type, body FROM events WHERE type = 'callr.api.sms'"
        )
        assert len(events) == 1
        # The answer is kept byte for byte.
        assert bytes(events[0]["body"]) == _answer_of(callr, "STUCK001")
        # Delivered now: not asked again.
        again = await reconcile_at(pool, client, LATER + timedelta(days=2))
    assert again.candidates == []
    assert len([a for a in callr.asked if a.path.endswith("/STUCK001")]) == 1


def _answer_of(callr: FakeCallr, sms_hash: str) -> bytes:
    return json.dumps(callr.sms[sms_hash], separators=(",", ":"), ensure_ascii=False).encode()


async def test_an_sms_callr_no_longer_knows_is_marked_and_not_asked_again(
    make_settings: SettingsFactory, database_url: str, callr: FakeCallr, pool: Any
) -> None:
    await webhooks(make_settings, v1_event("w1", "gone0001", lifecycle(C, S)))
    async with api(callr) as client:
        first = await reconcile_at(pool, client, LATER)
        later = await reconcile_at(pool, client, LATER + timedelta(days=5))
    assert first.unknown == 1
    assert later.candidates == []
    assert len(callr.asked) == 1
    marked = await fetch(database_url, "SELECT unknown, checks FROM reconciliations")
    assert marked == [{"unknown": True, "checks": 1}]
    assert (await message(database_url, "gone0001"))["status"] == "sent"  # the record says no more


async def test_an_answer_with_no_news_changes_nothing_and_adds_nothing_the_second_time(
    make_settings: SettingsFactory, database_url: str, callr: FakeCallr, pool: Any
) -> None:
    body = v1_event("w1", "same0001", lifecycle(C, P, S))
    await webhooks(make_settings, body)
    callr.add(sms_object(body))
    before = (await message(database_url, "same0001"), await steps(database_url, "same0001"))
    async with api(callr) as client:
        for days in (0, 2):
            await reconcile_at(pool, client, LATER + timedelta(days=days))
    after = (await message(database_url, "same0001"), await steps(database_url, "same0001"))
    assert {k: v for k, v in after[0].items() if k != "last_seen_at"} == {
        k: v for k, v in before[0].items() if k != "last_seen_at"
    }
    assert after[1] == before[1]
    assert await count(database_url, "events") == 2  # the webhook, one answer
    assert (await fetch(database_url, "SELECT checks FROM reconciliations"))[0]["checks"] == 2


async def test_reconcile_dry_run_lists_and_asks_nothing(
    make_settings: SettingsFactory, database_url: str, callr: FakeCallr
) -> None:
    await webhooks(make_settings, v1_event("w1", "stuck002", lifecycle(C, S)))
    code, out, err = await receiver_callr(database_url, callr, "reconcile", "--dry-run")
    assert code == 0, err
    assert out.splitlines() == ["stuck002", "1 SMS would be asked of CALLR; nothing was changed"]
    assert callr.asked == []


async def test_a_failing_callr_stops_the_run_and_the_next_one_starts_with_the_others(
    make_settings: SettingsFactory, database_url: str, callr: FakeCallr, pool: Any
) -> None:
    await webhooks(
        make_settings,
        v1_event("w1", "stuck005", lifecycle(C, S)),
        v1_event("w2", "stuck006", lifecycle(C, S)),
    )
    callr.add(sms_object(v1_event("x", "stuck006", lifecycle(C, S, D))))
    callr.forced.extend(Forced(500, b"oops", {"retry-after": "0"}) for _ in range(2))
    async with api(callr) as client:
        with pytest.raises(CallrApiError, match="HTTP 500"):
            await reconcile_at(pool, client, LATER)
        # stuck005 was the oldest and failed: the next run begins with stuck006.
        later = await reconcile_at(pool, client, LATER + timedelta(minutes=1))
    assert later.candidates == ["stuck006"]
    assert (await message(database_url, "stuck006"))["status"] == "delivered"


async def test_reconcile_stops_when_callr_refuses_the_credentials_and_writes_nothing(
    make_settings: SettingsFactory, database_url: str, callr: FakeCallr, pool: Any
) -> None:
    await webhooks(make_settings, v1_event("w1", "stuck003", lifecycle(C, S)))
    events = await count(database_url, "events")
    callr.forced.append(Forced(401, b'{"code":401,"message":"Authentication failed"}'))
    async with api(callr) as client:
        with pytest.raises(CallrApiError, match="refused the credentials"):
            await reconcile_at(pool, client, LATER)
    assert await count(database_url, "events") == events
    assert await count(database_url, "reconciliations") == 0


@pytest.mark.parametrize(
    ("forced", "expected"),
    [
        (Forced(400, b'{"code": 12, "message": "bad request"}'), "bad request (code 12)"),
        (
            Forced(200, b"<html>hi</html>", {"content-type": "text/html"}),
            "with text/html, not JSON",
        ),
        (Forced(200, b'{"type":"OUT","hash":"STUCK003"}'), "data.status is missing"),
        (
            Forced(200, b'{"type":"OUT","hash":"OTHER","status":"SENT"}'),
            "with another SMS (other)",
        ),
    ],
)
async def test_an_error_about_one_sms_is_a_check_and_the_run_goes_on(
    make_settings: SettingsFactory,
    database_url: str,
    callr: FakeCallr,
    pool: Any,
    forced: Forced,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The oldest stuck SMS answered with an error of its own: its answer is not written,
    # it counts as a check, and the SMS after it is reconciled in the same run (before,
    # the same oldest SMS stopped every later run).
    await webhooks(
        make_settings,
        v1_event("w1", "stuck003", lifecycle(C, S)),
        v1_event("w2", "stuck004", lifecycle(C, S)),
    )
    callr.add(sms_object(v1_event("x", "stuck004", lifecycle(C, S, D))))
    events = await count(database_url, "events")
    # A 5xx is tried again: each try gets the same answer.
    callr.forced.extend([forced] * (5 if forced.status >= 500 else 1))
    async with api(callr) as client:
        summary = await reconcile_at(pool, client, LATER)
        again = await reconcile_at(pool, client, LATER + timedelta(minutes=1))
    assert (summary.failed, summary.changed) == (1, 1)
    assert await count(database_url, "events") == events + 1  # stuck004's answer alone
    assert (await message(database_url, "stuck004"))["status"] == "delivered"
    checks = await fetch(
        database_url, "SELECT sms_id, checks, unknown FROM reconciliations ORDER BY sms_id"
    )
    assert checks == [
        {"sms_id": "stuck003", "checks": 1, "unknown": False},
        {"sms_id": "stuck004", "checks": 1, "unknown": False},
    ]
    assert again.candidates == []  # checked: asked again once RECONCILE_AFTER has passed
    assert expected in capsys.readouterr().out


# ---------------------------------------------------------------- backfill


async def test_backfill_fills_missed_reports_and_sms_and_forwards_missed_replies(
    make_settings: SettingsFactory, database_url: str, callr: FakeCallr, pool: Any
) -> None:
    await register(database_url, user_data=None, default=True, url="http://127.0.0.1:9/replies")
    known = v1_event("w1", "known001", lifecycle(C, P, S, D))
    missed_report = lifecycle(C, P, S, D)
    await webhooks(make_settings, known, v1_event("w2", "late0001", missed_report[:2]))
    callr.add(sms_object(known))
    callr.add(sms_object(v1_event("x", "late0001", missed_report)))
    callr.add(sms_object(v1_event("x", "never001", lifecycle(C, S, D))))
    reply = BASE_TIME + timedelta(minutes=5)
    callr.add(sms_object(mo_event("x", "mo000001", sender="+33612345678", at=reply)))
    known_before = (await message(database_url, "known001"), await steps(database_url, "known001"))
    async with api(callr) as client:
        summary = await backfill(
            pool,
            client,
            since=BASE_TIME - timedelta(hours=1),
            until=BASE_TIME + timedelta(hours=1),
            size=timedelta(minutes=30),
            routing_window=WINDOW,
        )
        assert summary.listed == 4
        assert (await message(database_url, "late0001"))["status"] == "delivered"
        assert await steps(database_url, "late0001") == [
            ("created", "pending"),
            ("pending", "sent"),
            ("sent", "delivered"),
        ]
        assert (await message(database_url, "never001"))["status"] == "delivered"
        assert (await message(database_url, "mo000001"))["direction"] == "inbound"
        known_after = (
            await message(database_url, "known001"),
            await steps(database_url, "known001"),
        )
        assert known_after[1] == known_before[1]
        assert known_after[0]["status"] == known_before[0]["status"]
        forwards = await fetch(
            database_url, "SELECT sms_id, rule FROM forwards WHERE kind = 'reply'"
        )
        assert forwards == [{"sms_id": "mo000001", "rule": "default"}]
        # Twice: nothing more.
        events = await count(database_url, "events")
        again = await backfill(
            pool,
            client,
            since=BASE_TIME - timedelta(hours=1),
            until=BASE_TIME + timedelta(hours=1),
            routing_window=WINDOW,
        )
    assert (again.listed, again.new) == (4, 0)
    assert await count(database_url, "events") == events
    # Four slices of 30 minutes, each searched for both directions with sms.search, in
    # CALLR's date format, a page of 100 at a time.
    searches = [json.loads(a.body)["params"] for a in callr.asked if a.path == "/json-rpc/v1.1/"]
    assert len(searches) == 4 * 2 + 2 * 2  # then two slices of an hour, the second time
    assert searches[0] == [
        {"type": "OUT", "from": "2026-03-02 15:56:04", "to": "2026-03-02 16:26:03"},
        {"offset": 0, "limit": 100},
    ]


async def test_backfill_no_forward_imports_replies_without_waking_handlers(
    database_url: str, callr: FakeCallr, pool: Any
) -> None:
    await register(database_url, user_data=None, default=True, url="http://127.0.0.1:9/replies")
    callr.add(sms_object(mo_event("x", "mo000002", sender="+33612345678")))
    code, out, err = await receiver_callr(
        database_url,
        callr,
        "backfill",
        "--since",
        "2026-03-02T00:00:00",
        "--until",
        "2026-03-03T00:00:00",
        "--direction",
        "in",
        "--no-forward",
    )
    assert code == 0, err
    assert "1 SMS listed by CALLR, 1 new to the receiver (replies not forwarded)" in out
    assert (await message(database_url, "mo000002"))["direction"] == "inbound"
    assert await count(database_url, "forwards") == 0
    # Nor later, by a replay of everything.
    await replay(pool, EventFilter(), routing_window=WINDOW)
    assert await count(database_url, "forwards") == 0


async def test_a_slice_with_an_sms_that_cannot_be_read_writes_nothing_of_it(
    database_url: str, callr: FakeCallr, pool: Any
) -> None:
    good = sms_object(v1_event("x", "good0001", lifecycle(C, S, D)))
    broken = {**sms_object(v1_event("x", "bad00001", lifecycle(C, S))), "status_history": "no"}
    page = {"jsonrpc": "2.0", "id": 1, "result": {"count": 2, "results": [good, broken]}}
    callr.forced.append(Forced(200, json.dumps(page).encode()))
    async with api(callr) as client:
        with pytest.raises(CallrApiError, match=r"SMS 1.*status_history must be a list"):
            await backfill(
                pool,
                client,
                since=BASE_TIME,
                until=BASE_TIME + timedelta(minutes=10),
                directions=("OUT",),
                routing_window=WINDOW,
            )
    assert await count(database_url, "events") == 0
    assert await count(database_url, "messages") == 0


# ---------------------------------------------------------------- registration


async def _registration_then_or_after_report(
    make_settings: SettingsFactory, database_url: str, *, register_first: bool
) -> list[dict[str, Any]]:
    await register(database_url, user_data="shop-7", url="http://127.0.0.1:9/shop")
    await register(database_url, user_data=None, default=True, url="http://127.0.0.1:9/default")
    report = v2_event("v2-1", "v2sid001", lifecycle(C, S, D))
    settings = make_settings(dispatcher=False, admin_tokens=(ADMIN,), api_tokens=(READER,))
    async with running(create_app(settings)) as client:
        put = {
            "user_data": "shop-7",
            "to": "+33612345678",
            "from": "SMS",
            "created_at": BASE_TIME.isoformat(),
        }

        async def registration() -> None:
            answer = await client.put(
                "/api/v1/messages/V2SID001", json=put, headers={"authorization": f"Bearer {ADMIN}"}
            )
            assert answer.status_code == 201, answer.text
            assert answer.json()["registered"] is True

        if register_first:
            await registration()
        assert (await client.post(HOOK, content=report)).status_code == 200
        await until_projected(client)
        if not register_first:
            await registration()
        mo = mo_event("mo-1", "mo000003", sender="+33612345678", at=BASE_TIME + timedelta(hours=1))
        assert (await client.post(HOOK, content=mo)).status_code == 200
        await until_projected(client)
        record = await message(database_url, "v2sid001")
        assert (record["user_data"], record["status"]) == ("shop-7", "delivered")
        # The same registration again: nothing new.
        again = await client.put(
            "/api/v1/messages/v2sid001", json=put, headers={"authorization": f"Bearer {ADMIN}"}
        )
        assert (again.status_code, again.json()["registered"]) == (200, False)
    return await fetch(
        database_url,
        "SELECT f.rule, f.user_data, f.mt_sms_id, h.match FROM forwards f"
        " JOIN handlers h ON h.id = f.handler_id WHERE f.kind = 'reply'",
    )


@pytest.mark.parametrize("register_first", [True, False])
async def test_a_registered_v2_send_routes_its_replies_by_user_data(
    make_settings: SettingsFactory, database_url: str, register_first: bool
) -> None:
    forwards = await _registration_then_or_after_report(
        make_settings, database_url, register_first=register_first
    )
    assert forwards == [
        {"rule": "recent_mt", "user_data": "shop-7", "mt_sms_id": "v2sid001", "match": "shop-7"}
    ]


async def test_registration_errors_are_clear(
    make_settings: SettingsFactory, database_url: str
) -> None:
    await webhooks(make_settings, mt_event("w1", "v1sms001", to="+33600000001", user_data="crm"))
    settings = make_settings(dispatcher=False, admin_tokens=(ADMIN,), api_tokens=(READER,))
    async with running(create_app(settings)) as client:
        admin = {"authorization": f"Bearer {ADMIN}"}
        reader = {"authorization": f"Bearer {READER}"}
        ok = {"user_data": "crm", "to": "+33600000001"}
        refused = await client.put("/api/v1/messages/abc", json=ok, headers=reader)
        assert refused.status_code == 403
        answer = await client.put(
            "/api/v1/messages/v1sms001", json={**ok, "user_data": "other"}, headers=admin
        )
        assert answer.status_code == 409
        assert answer.json()["error"] == "the message already records user_data 'crm', not 'other'"
        for body, error in [
            ({"to": "+336"}, "user_data is required"),
            ({**ok, "colour": "red"}, "unknown field(s): colour"),
            ({**ok, "created_at": "yesterday"}, "created_at must be an RFC 3339 time"),
            ({**ok, "created_at": "2026-03-02T10:00:00"}, "with its zone"),
        ]:
            answer = await client.put("/api/v1/messages/abc", json=body, headers=admin)
            assert answer.status_code == 400
            assert error in answer.json()["error"]
        bad = await client.put("/api/v1/messages/abc", content=b"{", headers=admin)
        assert bad.status_code == 400
        assert "not valid JSON" in bad.json()["error"]
    assert await count(database_url, "events") == 1


# ---------------------------------------------------------------- rebuild


async def test_rebuild_equals_live_with_api_events_in_the_mix(
    make_settings: SettingsFactory, database_url: str, callr: FakeCallr, pool: Any
) -> None:
    await register(database_url, user_data="shop-7", url="http://127.0.0.1:9/shop")
    await webhooks(
        make_settings,
        v1_event("w1", "stuck009", lifecycle(C, P, S)),
        v2_event("w2", "v2sid009", lifecycle(C, S)),
    )
    callr.add(sms_object(v1_event("x", "stuck009", lifecycle(C, P, S, D))))
    callr.add(sms_object(v1_event("x", "never009", lifecycle(C, S, D))))
    callr.add(sms_object(mo_event("x", "mo000009", sender="+33612345678")))
    async with api(callr) as client:
        await reconcile_at(pool, client, LATER)
        await backfill(
            pool,
            client,
            since=BASE_TIME - timedelta(hours=1),
            until=BASE_TIME + timedelta(hours=1),
            routing_window=WINDOW,
        )
    settings = make_settings(dispatcher=False, admin_tokens=(ADMIN,))
    async with running(create_app(settings)) as app:
        answer = await app.put(
            "/api/v1/messages/v2sid009",
            json={"user_data": "shop-7", "to": "+33612345678", "created_at": BASE_TIME.isoformat()},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        assert answer.status_code == 201, answer.text
    live = await projected(database_url)
    types = await fetch(database_url, "SELECT DISTINCT type FROM events ORDER BY type")
    assert [t["type"] for t in types] == [
        "callr.api.sms",
        "receiver.registration",
        "sms.mt.status_update",
        "v2.sms.outbound.updated",
    ]
    await rebuild(pool, batch=3)
    assert without_provenance(await projected(database_url)) == without_provenance(live)


async def test_serve_reconciles_on_its_own_when_the_credentials_are_set(
    make_settings: SettingsFactory, database_url: str, callr: FakeCallr
) -> None:
    callr.add(sms_object(v1_event("x", "stuck010", lifecycle(C, S, D))))
    # No sender: its fetch of CALLR's GSM table is not reconcile's to count.
    settings = make_settings(
        dispatcher=False,
        sender=False,
        reconcile_interval="0.2",
        reconcile_after="1h",
        **callr.settings(),
    )
    async with running(create_app(settings)) as client:
        assert (
            await client.post(HOOK, content=v1_event("w1", "stuck010", lifecycle(C, S)))
        ).status_code == 200
        await until_projected(client)
        async with asyncio.timeout(20):
            while (await message(database_url, "stuck010"))["status"] != "delivered":  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    assert [a.path for a in callr.asked] == ["/rest/v1.1/sms/STUCK010"]
