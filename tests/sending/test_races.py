"""Races that peers hit: a report before the send's answer, statuses within one second, a
silent CALLR, and what a forward sent again carries.

Real app, real CALLR double, real handler on loopback.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.app import create_app
from receiver.status import RANK, Status
from testkit.callr_events import Step, v1_event, v2_event
from testkit.fake_callr import FakeCallr
from testkit.handler_server import handler_server, wait_for
from testkit.support import fetch, running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.forwarding.conftest import register
from tests.sending.test_sending import QUICK, READ, TO, bearer, post, until_state


async def test_a_report_before_the_send_s_answer_still_reaches_the_send_s_handler(
    make_settings: SettingsFactory, callr: FakeCallr
) -> None:
    # CALLR makes the SMS and answers a second later; its `delivered` webhook comes in
    # that second, before the send's `accepted` step (v2 reports carry no user_data).
    callr.faults = ["hang"]
    callr.hang_seconds = 1.0
    settings = make_settings(**QUICK, **callr.v2_settings())
    async with handler_server() as handler, running(create_app(settings)) as client:
        await register(
            settings.database_url or "",
            user_data="otp-*",
            url=handler.url("/status"),
            events=("status",),
        )
        answer = await post(client, {"to": TO, "text": "Code 1234", "user_data": "otp-7"})
        async with asyncio.timeout(10):
            while not callr.created:  # noqa: ASYNC110 (the double records)
                await asyncio.sleep(0.01)
        sid = callr.created[0]["hash"].lower()
        now = datetime.now(UTC)
        report = v2_event(
            "early-dlr",
            sid,
            [Step(Status.SENT, now), Step(Status.DELIVERED, now + timedelta(seconds=1))],
        )
        posted = await client.post(f"/webhooks/callr/{TEST_URL_TOKEN}", content=report)
        before = await client.get(f"/api/v1/sms/{answer.json()['id']}", headers=bearer(READ))
        sent = await until_state(client, answer.json()["id"], "accepted")
        await until_projected(client)
        await wait_for(
            lambda: any(
                json.loads(r.body)["change"]["after"] == "delivered" for r in handler.on("/status")
            ),
            seconds=20,
        )
        await asyncio.sleep(0.5)  # no second callback for the same change
    assert posted.status_code == 200
    assert before.json()["state"] != "accepted"  # the report came first
    callbacks = [json.loads(r.body) for r in handler.on("/status")]
    afters = [c["change"]["after"] for c in callbacks]
    assert afters[-1] == "delivered"
    assert len(afters) == len(set(afters))  # each change once
    assert [RANK[Status(a)] for a in afters] == sorted(RANK[Status(a)] for a in afters)
    assert {c["user_data"] for c in callbacks} == {"otp-7"}
    assert callbacks[-1]["sms"]["id"] == sent["sms_id"]


def _report(event_id: str, sms_id: str, status: Status, at: datetime) -> bytes:
    created = at - timedelta(seconds=5)
    return v1_event(
        event_id,
        sms_id,
        [Step(Status.CREATED, created), Step(Status.SENT, created), Step(status, at)],
        user_data="late-1",
    )


@pytest.mark.parametrize(
    "pair",
    [(Status.DELIVERED, Status.FAILED), (Status.SENT, Status.DELIVERED)],
    ids=["delivered-and-failed", "sent-after-delivered"],
)
async def test_statuses_stamped_in_one_second_give_one_status_whatever_their_order(
    make_settings: SettingsFactory, database_url: str, pair: tuple[Status, Status]
) -> None:
    at = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    first, second = pair
    async with handler_server() as handler, running(create_app(make_settings(**QUICK))) as client:
        await register(database_url, user_data="late-*", url=handler.url("/s"), events=("status",))
        # One SMS gets the two reports in one order, the other in the other.
        for sms_id, order in (("onesec01", (first, second)), ("onesec02", (second, first))):
            for n, status in enumerate(order):
                body = _report(f"{sms_id}-{n}", sms_id, status, at)
                answer = await client.post(f"/webhooks/callr/{TEST_URL_TOKEN}", content=body)
                assert answer.status_code == 200
                await until_projected(client)
        await asyncio.sleep(1.5)  # every callback delivered
        records = {
            r["sms_id"]: r
            for r in await fetch(
                database_url,
                "SELECT sms_id, status::text AS status, status_at FROM messages ORDER BY sms_id",
            )
        }
        steps = {
            sms_id: await fetch(
                database_url,
                "SELECT before, after, at FROM transitions WHERE sms_id = $1"
                " ORDER BY at, before, after",
                sms_id,
            )
            for sms_id in records
        }
    # One status, the same whatever the order; the history whole and the same.
    assert records["onesec01"]["status"] == records["onesec02"]["status"]
    assert steps["onesec01"] == steps["onesec02"]
    assert {s["after"] for s in steps["onesec01"]} >= {first.value, second.value}
    # The callbacks of each SMS never go backwards: each change's status ranks no lower
    # than the one before, and none follows a terminal one with a lesser status.
    for sms_id in records:
        afters = [
            json.loads(r.body)["change"]["after"]
            for r in handler.on("/s")
            if json.loads(r.body)["sms"]["id"] == sms_id
        ]
        ranks = [_key(a) for a in afters]
        assert ranks == sorted(ranks), (sms_id, afters)
        assert afters[-1] == records[sms_id]["status"]


def _key(status: str) -> tuple[bool, int]:
    parsed = Status(status)
    return (parsed in (Status.DELIVERED, Status.FAILED, Status.EXPIRED, Status.ERROR), RANK[parsed])


async def test_a_silent_callr_is_said_by_the_status_while_sends_continue(
    make_settings: SettingsFactory, callr: FakeCallr, database_url: str
) -> None:
    settings = make_settings(
        **QUICK, **callr.settings(), webhooks_silent_after=timedelta(seconds=1)
    )
    async with running(create_app(settings)) as client:
        quiet = (await client.get("/api/v1/status", headers=bearer(READ))).json()["webhooks"]
        answer = await post(client, {"to": TO, "text": "hello?"})
        sent = await until_state(client, answer.json()["id"], "accepted")
        await asyncio.sleep(1.2)
        silent = (await client.get("/api/v1/status", headers=bearer(READ))).json()["webhooks"]
        metrics = (await client.get("/metrics")).text
        now = datetime.now(UTC)
        report = _v1_report(callr.created[0], now)
        await client.post(f"/webhooks/callr/{TEST_URL_TOKEN}", content=report)
        heard = (await client.get("/api/v1/status", headers=bearer(READ))).json()["webhooks"]
    assert quiet["silent"] is False  # nothing sent: nothing to say
    assert silent["silent"] is True
    assert silent["unreported_sends"] == 1
    assert silent["silent_since"] is not None
    gauge = next(
        line for line in metrics.splitlines() if line.startswith("receiver_webhooks_silent_seconds")
    )
    assert float(gauge.split()[-1]) >= 1.0
    assert heard["silent"] is False
    assert heard["last_report_at"] is not None
    assert sent["sms_id"]


def _v1_report(sms: dict[str, Any], now: datetime) -> bytes:
    at = now.strftime("%Y-%m-%d %H:%M:%S")
    return json.dumps(
        {
            "event_id": f"dlr-{sms['hash']}",
            "event_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "hook_hash": "IAYHJ6F3",
            "try": 0,
            "type": "sms.mt.status_update",
            "data": {**sms, "status": "SENT", "date_update": at, "date_sent": at},
        }
    ).encode()
