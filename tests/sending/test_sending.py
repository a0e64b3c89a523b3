"""Sending SMS through the receiver: durable, never twice, known before CALLR's first report.

Every test runs a real app (its sender included) against the fake CALLR on loopback,
which creates SMS for `sms.send`, REST v1.1 `POST /sms` and v2, and misbehaves on demand.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from receiver.app import create_app
from receiver.db.engine import create_pool
from receiver.db.rate import SharedRate
from receiver.replay import rebuild
from receiver.status import Status
from testkit.callr_events import Step, lifecycle, v2_event
from testkit.fake_callr import FakeCallr
from testkit.handler_server import handler_server, wait_for
from testkit.support import console_sign_in, fetch, running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.forwarding.conftest import register
from tests.test_cli import receiver_command

SEND = "send-token-0123456789abcdef"
PREFIXED = "send-token-billing-0123456789"
READ = "read-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
TO = "+33612345678"
# Lost answers looked for at once; the list complete half a second after a try.
QUICK = {
    "send_tokens": f"{SEND},{PREFIXED}=billing-",
    "api_tokens": READ,
    "admin_tokens": ADMIN,
    "send_lookup_after": timedelta(seconds=0.5),
    "send_unknown_after": timedelta(seconds=1.5),
    "dispatch_poll_interval": 0.2,
}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def until_state(
    client: httpx.AsyncClient, send_id: str, *states: str, seconds: float = 20.0
) -> dict[str, Any]:
    """The send once it is in one of `states`."""
    async with asyncio.timeout(seconds):
        while True:
            answer = await client.get(f"/api/v1/sms/{send_id}", headers=bearer(READ))
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            if body["state"] in states:
                return body
            await asyncio.sleep(0.05)


async def post(
    client: httpx.AsyncClient, body: Any, token: str = SEND, key: str | None = None
) -> httpx.Response:
    headers = bearer(token) | ({"idempotency-key": key} if key else {})
    return await client.post("/api/v1/sms", json=body, headers=headers)


async def test_a_send_is_durable_at_once_and_its_record_exists_before_any_webhook(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    settings = make_settings(**QUICK, **callr.settings())
    async with running(create_app(settings)) as client:
        answer = await post(
            client,
            {"to": TO, "text": "Votre code : 4821", "user_data": "otp-42", "nature": "alerting"},
        )
        assert answer.status_code == 202, answer.text
        queued = answer.json()
        assert queued["state"] in ("queued", "submitted", "accepted")
        assert (queued["parts"], queued["encoding"], queued["attempts"]) == (1, "gsm", 0)
        assert answer.headers["location"] == f"/api/v1/sms/{queued['id']}"
        sent = await until_state(client, queued["id"], "accepted")
        record = await client.get(f"/api/v1/messages/{sent['sms_id']}", headers=bearer(READ))
    assert len(callr.created) == 1
    made = callr.created[0]
    assert (made["to"], made["text"], made["user_data"]) == (TO, "Votre code : 4821", "otp-42")
    assert made["nature"] == "ALERTING"
    assert sent["sms_id"] == made["hash"].lower()
    assert sent["attempts"] == 1
    assert sent["error"] is None
    # No webhook came: the record is the send's own, user_data and text included.
    message = record.json()
    assert record.status_code == 200
    assert (message["user_data"], message["text"], message["to"]) == ("otp-42", made["text"], TO)
    assert message["status"] == "created"


async def test_the_same_key_is_the_same_send_and_another_body_a_conflict(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    body = {"to": TO, "text": "Rendez-vous demain 9h", "user_data": "rdv-7"}
    async with running(create_app(make_settings(**QUICK, **callr.settings()))) as client:
        first = await post(client, body, key="rdv-7-reminder")
        again = await asyncio.gather(*(post(client, body, key="rdv-7-reminder") for _ in range(5)))
        await until_state(client, first.json()["id"], "accepted")
        after = await post(client, body, key="rdv-7-reminder")
        other = await post(client, {**body, "text": "Rendez-vous demain 10h"}, key="rdv-7-reminder")
    assert first.status_code == 202
    assert {a.status_code for a in again} == {200}
    assert {a.json()["id"] for a in [*again, after]} == {first.json()["id"]}
    assert after.json()["state"] == "accepted"
    assert other.status_code == 409
    assert other.json()["parameter"] == "Idempotency-Key"
    assert len(callr.created) == 1


async def test_scopes_and_prefixes(make_settings: SettingsFactory, callr: FakeCallr) -> None:
    body = {"to": TO, "text": "hello"}
    async with running(create_app(make_settings(**QUICK, **callr.settings()))) as client:
        read = await post(client, body, token=READ)
        nobody = await client.post("/api/v1/sms", json=body)
        unknown = await post(client, body, token="not-a-token-0123456789abc")
        outside = await post(client, {**body, "user_data": "sales-1"}, token=PREFIXED)
        missing = await post(client, body, token=PREFIXED)
        inside = await post(client, {**body, "user_data": "billing-9"}, token=PREFIXED)
        admin = await post(client, body, token=ADMIN)
        send_reads = await client.get("/api/v1/messages", headers=bearer(SEND))
        prefixed_sees_its_send = await client.get(
            f"/api/v1/sms/{inside.json()['id']}", headers=bearer(PREFIXED)
        )
        # Another team's send token: as if there were no such send.
        others_send = await client.get(f"/api/v1/sms/{inside.json()['id']}", headers=bearer(SEND))
    assert read.status_code == 403
    assert "send" in read.json()["error"]
    assert nobody.status_code == 401
    assert unknown.status_code == 401
    assert outside.status_code == 400
    assert outside.json()["parameter"] == "user_data"
    assert missing.status_code == 400
    assert missing.json()["parameter"] == "user_data"
    assert inside.status_code == 202
    assert admin.status_code == 202
    assert send_reads.status_code == 403
    assert prefixed_sees_its_send.status_code == 200
    assert others_send.status_code == 404


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"to": "0612345678", "text": "hi"}, "to"),
        ({"to": "+0612345678", "text": "hi"}, "to"),
        ({"to": TO, "text": ""}, "text"),
        ({"to": TO, "text": "x" * 3201}, "text"),
        ({"to": TO}, "text"),
        ({"to": TO, "text": "hi", "from": "123456789012345678"}, "from"),
        ({"to": TO, "text": "hi", "from": "TWELVE-CHARS"}, "from"),
        ({"to": TO, "text": "hi", "from": "Acme!"}, "from"),
        ({"to": TO, "text": "hi", "user_data": "u" * 256}, "user_data"),
        ({"to": TO, "text": "hi", "nature": "urgent"}, "nature"),
        ({"to": TO, "text": "hi", "encoding": "latin1"}, "encoding"),
        ({"to": TO, "text": "hi", "priority": 1}, "priority"),
        ([TO, "hi"], None),
    ],
)
async def test_a_bad_field_is_a_400_naming_it(
    make_settings: SettingsFactory, callr: FakeCallr, body: Any, parameter: str | None
) -> None:
    async with running(create_app(make_settings(**QUICK, **callr.settings()))) as client:
        answer = await post(client, body)
        bad_key = await post(client, {"to": TO, "text": "hi"}, key="has space")
        listed = await client.get("/api/v1/sms/nothing-here", headers=bearer(READ))
    assert answer.status_code == 400
    assert answer.json()["parameter"] == parameter
    assert bad_key.status_code == 400
    assert bad_key.json()["parameter"] == "Idempotency-Key"
    assert listed.status_code == 404
    assert callr.created == []


async def test_parts_and_encoding_are_known_in_the_202(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    texts = [
        ("a" * 160, None, 1, "gsm"),
        ("a" * 161, None, 2, "gsm"),
        ("€" * 81, None, 2, "gsm"),
        ("🙂" * 35, None, 1, "unicode"),
        ("a" * 69 + "🙂", None, 2, "unicode"),
        ("x" * 3200, None, 21, "gsm"),
        ("Fête à 20h ç", "gsm", 1, "gsm"),
    ]
    async with running(create_app(make_settings(**QUICK, **callr.settings()))) as client:
        answers = [
            await post(client, {"to": TO, "text": text} | ({"encoding": enc} if enc else {}))
            for text, enc, _, _ in texts
        ]
    got = [(a.json()["parts"], a.json()["encoding"]) for a in answers]
    assert got == [(parts, encoding) for _, _, parts, encoding in texts]
    assert answers[-1].json()["replaced"] == ["ê", "ç"]


@pytest.mark.parametrize(
    ("fault", "state", "created"),
    [
        ("drop", "accepted", 1),  # created, answer cut: found in CALLR's list
        ("hang", "accepted", 1),  # created, answer too late: found
        ("hang_before", "accepted", 1),  # nothing created, no answer: absent, sent again
        ("503", "accepted", 1),  # nothing created, a bare 5xx: looked for, absent, sent again
        ("429", "accepted", 1),
        # Created, then a 5xx: a lost answer, looked for before any new try.
        ("made_500", "accepted", 1),
        ("made_502", "accepted", 1),
        ("made_504", "accepted", 1),
        ("refuse_500", "accepted", 1),  # CALLR's own error object: not created, tried again
        ("refuse", "rejected", 0),  # CALLR's refusal is final
    ],
)
async def test_each_misbehaviour_ends_in_one_sms_or_a_refusal(
    make_settings: SettingsFactory, callr: FakeCallr, fault: str, state: str, created: int
) -> None:
    callr.faults = [fault]
    async with running(create_app(make_settings(**QUICK, **callr.settings()))) as client:
        answer = await post(client, {"to": TO, "text": f"fault {fault}", "user_data": "f"})
        done = await until_state(client, answer.json()["id"], "accepted", "rejected", "unknown")
    assert done["state"] == state
    assert len(callr.created) == created
    if state == "accepted":
        assert done["sms_id"] == callr.created[0]["hash"].lower()
    else:
        assert done["error"] == "INVALID_PHONE_NUMBER (code 22)"
        assert done["attempts"] == 1


@pytest.mark.parametrize("fault", ["made_500", "made_502", "made_504"])
async def test_a_v2_send_answered_5xx_after_the_sms_was_made_is_one_sms(
    make_settings: SettingsFactory, callr: FakeCallr, fault: str
) -> None:
    callr.faults = [fault]
    async with running(create_app(make_settings(**QUICK, **callr.v2_settings()))) as client:
        answer = await post(client, {"to": TO, "text": f"v2 {fault}", "user_data": "f"})
        done = await until_state(client, answer.json()["id"], "accepted", "rejected", "unknown")
    assert len(callr.created) == 1
    assert done["state"] in ("accepted", "unknown")
    if done["state"] == "accepted":
        assert done["sms_id"] == callr.created[0]["hash"].lower()


async def test_v2_send_records_the_user_data_and_a_reply_routes_to_its_handler(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    settings = make_settings(**QUICK, **callr.v2_settings())
    async with handler_server() as handler, running(create_app(settings)) as client:
        await register(settings.database_url or "", user_data="survey-3", url=handler.url("/r"))
        answer = await post(
            client, {"to": TO, "text": "Satisfait ? OUI/NON", "user_data": "survey-3"}
        )
        sent = await until_state(client, answer.json()["id"], "accepted")
        reply = json.loads(
            v2_event("evt-reply-1", "mo00000001", lifecycle(Status.DELIVERED), inbound=True)
        )
        reply["payload"]["created"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        posted = await client.post(
            f"/webhooks/callr/{TEST_URL_TOKEN}", content=json.dumps(reply).encode()
        )
        await until_projected(client)
        async with asyncio.timeout(20):
            while not handler.on("/r"):  # noqa: ASYNC110 (the handler records what it gets)
                await asyncio.sleep(0.05)
    assert sent["api"] == "v2"
    assert callr.created[0]["user_data"] == ""  # v2 carries none: the receiver keeps it
    assert posted.status_code == 200
    forwarded = json.loads(handler.on("/r")[0].body)
    assert forwarded["user_data"] == "survey-3"


async def test_an_undecidable_send_is_unknown_never_sent_again_and_an_admin_settles_it(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    # CALLR's list cannot be read, and no webhook reports the SMS.
    callr.faults = ["drop"]
    callr.searches_fail = True
    settings = make_settings(**QUICK, **callr.v2_settings())
    async with running(create_app(settings)) as client:
        answer = await post(client, {"to": TO, "text": "lost", "user_data": "u-1"})
        send_id = answer.json()["id"]
        unknown = await until_state(client, send_id, "unknown")
        await asyncio.sleep(1.0)
        still = await client.get(f"/api/v1/sms/{send_id}", headers=bearer(READ))
        by_reader = await client.post(
            f"/api/v1/sms/{send_id}/settle", json={"state": "queued"}, headers=bearer(READ)
        )
        settled = await client.post(
            f"/api/v1/sms/{send_id}/settle",
            json={"state": "accepted", "sms_id": callr.created[0]["hash"]},
            headers=bearer(ADMIN),
        )
        twice = await client.post(
            f"/api/v1/sms/{send_id}/settle", json={"state": "queued"}, headers=bearer(ADMIN)
        )
        record = await client.get(
            f"/api/v1/messages/{callr.created[0]['hash'].lower()}", headers=bearer(READ)
        )
    assert "CALLR's list could not be read" in unknown["reason"]
    assert unknown["error"] is None
    assert still.json()["state"] == "unknown"
    assert len(callr.created) == 1
    assert by_reader.status_code == 403
    assert settled.status_code == 200
    assert settled.json()["state"] == "accepted"
    assert twice.status_code == 409
    assert record.json()["user_data"] == "u-1"


async def test_sending_unconfigured_is_a_503_that_says_what_to_set(
    make_settings: SettingsFactory,
) -> None:
    async with running(create_app(make_settings(**QUICK))) as client:
        answer = await post(client, {"to": TO, "text": "hi"})
    assert answer.status_code == 503
    assert "RECEIVER_CALLR_API_KEY" in answer.json()["error"]


async def test_rebuild_reproduces_every_send_and_its_record(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    callr.faults = ["drop", "refuse", "503"]
    settings = make_settings(**QUICK, **callr.settings())
    async with running(create_app(settings)) as client:
        ids = [
            (await post(client, {"to": TO, "text": f"n{n}", "user_data": f"u{n}"})).json()["id"]
            for n in range(4)
        ]
        for send_id in ids:
            await until_state(client, send_id, "accepted", "rejected")
    assert settings.database_url is not None
    query = (
        "SELECT id, state, sms_id, error, attempts, to_number, text, user_data, parts, seq"
        " FROM sends ORDER BY id"
    )
    records = "SELECT sms_id, user_data, text, to_number, status FROM messages ORDER BY sms_id"
    before = await fetch(settings.database_url, query), await fetch(settings.database_url, records)
    pool = await create_pool(settings.database_url, size=2, command_timeout=30)
    try:
        await rebuild(pool)
    finally:
        await pool.close()
    after = await fetch(settings.database_url, query), await fetch(settings.database_url, records)
    assert after == before
    assert len(before[0]) == 4
    assert len(before[1]) == 3


async def test_the_console_shows_sends_and_an_admin_settles_an_unknown_one(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    callr.faults = ["drop"]
    callr.searches_fail = True
    settings = make_settings(**QUICK, **callr.v2_settings(), console_mask="numbers")
    async with running(create_app(settings)) as client:
        lost = (await post(client, {"to": TO, "text": "lost", "user_data": "u-7"})).json()["id"]
        # The cut answer is the first send's: the second is posted once it is unknown.
        await until_state(client, lost, "unknown")
        sent = (await post(client, {"to": TO, "text": "fine", "user_data": "u-8"})).json()["id"]
        accepted = await until_state(client, sent, "accepted")
        await sign_in(client, READ)
        listed = await client.get("/console/sends?state=unknown")
        overview = await client.get("/console")
        as_reader = await client.get(f"/console/sends/{lost}")
        message = await client.get(f"/console/messages/{accepted['sms_id']}")
        await client.post("/console/logout", data={"csrf": csrf_of(overview)})
        await sign_in(client, ADMIN)
        page = await client.get(f"/console/sends/{lost}")
        too_long = await client.post(
            f"/console/sends/{lost}/settle",
            data={"csrf": csrf_of(page), "state": "accepted", "sms_id": "x" * 3000},
        )
        settled = await client.post(
            f"/console/sends/{lost}/settle",
            data={"csrf": csrf_of(page), "state": "queued"},
        )
        after = await until_state(client, lost, "accepted")
    assert listed.status_code == 200
    assert lost in listed.text
    assert sent not in listed.text
    assert "+33612345678" not in listed.text  # masked
    assert 'href="/console/sends?state=unknown" class="bad">1<' in overview.text
    assert "An admin session settles it." in as_reader.text
    assert f'href="/console/sends/{sent}"' in message.text
    assert 'action="/console/sends/' in page.text
    assert too_long.status_code == 400
    assert "1 to 64 letters and digits" in too_long.text
    assert settled.status_code == 303
    # Sent again on the admin's word: the fake now holds two SMS for two sends.
    assert after["attempts"] == 2
    assert len(callr.created) == 3


async def sign_in(client: httpx.AsyncClient, token: str) -> None:
    answer = await console_sign_in(client, token)
    assert answer.status_code == 303


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def test_receiver_send_from_the_shell_queues_once_per_key(
    make_settings: SettingsFactory, callr: FakeCallr, database_url: str
) -> None:
    env = {"RECEIVER_DATABASE_URL": database_url, **callr.environment()}
    args = ["send", "--to", TO, "--text", "from the shell", "--user-data", "ops-1"]
    first = await asyncio.to_thread(receiver_command, *args, "--idempotency-key", "k1", env=env)
    again = await asyncio.to_thread(receiver_command, *args, "--idempotency-key", "k1", env=env)
    other = await asyncio.to_thread(
        receiver_command, *args[:-1], "ops-2", "--idempotency-key", "k1", env=env
    )
    bad = await asyncio.to_thread(receiver_command, "send", "--to", "0612", "--text", "x", env=env)
    assert first.returncode == 0, first.stderr
    queued = json.loads(first.stdout)
    assert queued["state"] == "queued"
    assert json.loads(again.stdout)["id"] == queued["id"]
    assert "found by its key" in again.stderr
    assert other.returncode == 2
    assert "Idempotency-Key" in other.stderr
    assert bad.returncode == 2
    assert "E.164" in bad.stderr
    # A serve (or worker) sends what the shell queued.
    async with running(create_app(make_settings(**QUICK, **callr.settings()))) as client:
        sent = await until_state(client, queued["id"], "accepted")
    assert len(callr.created) == 1
    assert callr.created[0]["hash"].lower() == sent["sms_id"]


async def test_a_sent_sms_s_status_news_reaches_its_handler_with_no_registration(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    settings = make_settings(**QUICK, **callr.v2_settings())
    async with handler_server() as handler, running(create_app(settings)) as client:
        await register(
            settings.database_url or "",
            user_data="billing-*",
            url=handler.url("/s"),
            events=("status",),
        )
        answer = await post(client, {"to": TO, "text": "Facture", "user_data": "billing-12"})
        sent = await until_state(client, answer.json()["id"], "accepted")
        now = datetime.now(UTC)
        report = v2_event(
            "evt-dlr-1",
            sent["sms_id"],
            [Step(Status.SENT, now), Step(Status.DELIVERED, now + timedelta(seconds=2))],
        )
        assert (await client.post(f"/webhooks/callr/{TEST_URL_TOKEN}", content=report)).is_success
        await until_projected(client)
        await wait_for(
            lambda: any(
                json.loads(r.body)["change"]["after"] == "delivered" for r in handler.on("/s")
            ),
            seconds=20,
        )
    callbacks = [json.loads(r.body) for r in handler.on("/s")]
    assert {c["user_data"] for c in callbacks} == {"billing-12"}
    assert [c["change"]["after"] for c in callbacks][-1] == "delivered"
    assert callbacks[0]["sms"]["id"] == sent["sms_id"]


async def test_callr_s_rate_is_one_for_every_process(database_url: str) -> None:
    # Two processes' limiters on one database at 20 a second: 20 turns take about a
    # second whoever takes them, not half of it.
    pools = [await create_pool(database_url, size=2, command_timeout=10) for _ in range(2)]
    try:
        limits = [SharedRate(pool, 20.0) for pool in pools]
        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(limits[n % 2].wait() for n in range(20)))
        took = asyncio.get_running_loop().time() - started
    finally:
        for pool in pools:
            await pool.close()
    assert took >= 0.9


async def test_a_lost_answer_waits_for_an_identical_send_in_flight_and_takes_its_own_sms(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    # The first send's answer comes late (within the timeout); the second's is cut.
    # Looked for while the first is still in flight, CALLR's list shows both SMS, the
    # first's first: claiming it would leave the first send an SMS it cannot record.
    callr.faults = ["hang", "drop"]
    callr.hang_seconds = 1.5
    body = {"to": TO, "text": "Votre RDV est confirmé", "user_data": "rdv-1"}
    async with running(create_app(make_settings(**QUICK, **callr.settings()))) as client:
        first = (await post(client, body)).json()["id"]
        await wait_for(lambda: len(callr.created) == 1, seconds=10)
        second = (await post(client, body)).json()["id"]
        done = [await until_state(client, send_id, "accepted") for send_id in (first, second)]
    assert [d["sms_id"] for d in done] == [sms["hash"].lower() for sms in callr.created]
    assert done[1]["attempts"] == 1  # found, not sent again
    assert len(callr.created) == 2
    parked = await fetch(
        make_settings().database_url or "", "SELECT 1 FROM events WHERE state = 'invalid'"
    )
    assert parked == []


async def test_an_unknown_send_is_not_settled_with_another_send_s_sms(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    callr.faults = ["drop"]
    callr.searches_fail = True
    async with running(create_app(make_settings(**QUICK, **callr.v2_settings()))) as client:
        lost = (await post(client, {"to": TO, "text": "a", "user_data": "u"})).json()["id"]
        await until_state(client, lost, "unknown")
        other = (await post(client, {"to": TO, "text": "b", "user_data": "u"})).json()["id"]
        taken = (await until_state(client, other, "accepted"))["sms_id"]
        refused = await client.post(
            f"/api/v1/sms/{lost}/settle",
            json={"state": "accepted", "sms_id": taken},
            headers=bearer(ADMIN),
        )
        still = await client.get(f"/api/v1/sms/{lost}", headers=bearer(READ))
        settled = await client.post(
            f"/api/v1/sms/{lost}/settle",
            json={"state": "accepted", "sms_id": callr.created[0]["hash"]},
            headers=bearer(ADMIN),
        )
    assert refused.status_code == 409
    assert other in refused.json()["error"]
    assert still.json()["state"] == "unknown"
    assert settled.json()["state"] == "accepted"
