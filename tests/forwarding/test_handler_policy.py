"""A policy and a health per handler: changed in place, its limits held, its owners told.

A real app delivers to a real handler on loopback. Each test asserts what a team
relies on: a handler changed without losing its forwards, a limit on requests in
flight that holds, a secret rotated without a moment when the handler cannot verify,
a notice when the handler starts failing, is disabled and recovers.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from receiver.app import create_app
from receiver.forwarding.signing import new_secret
from testkit.callr_events import mo_event
from testkit.handler_server import HandlerServer
from testkit.support import fetch, running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.forwarding.conftest import FAST, register

ADMIN = "admin-token-for-handler-policy"
AUTH = {"authorization": f"Bearer {ADMIN}"}


async def _replies(client: httpx.AsyncClient, count: int, *, prefix: str = "p") -> None:
    """`count` replies with user_data 42, each from its own number (no conversation order)."""
    for n in range(count):
        body = mo_event(
            f"{prefix}-{n}", f"{prefix.upper()}{n:07d}", sender=f"+3360{n:07d}", user_data="42"
        )
        answer = await client.post(f"/webhooks/callr/{TEST_URL_TOKEN}", content=body)
        assert answer.status_code == 200
    await until_projected(client)


async def _until(database_url: str, query: str, *args: Any, seconds: float = 20.0) -> Any:
    async with asyncio.timeout(seconds):
        while True:
            rows = await fetch(database_url, query, *args)
            if rows:
                return rows
            await asyncio.sleep(0.05)


async def test_patch_changes_a_handler_in_place_and_its_waiting_forwards_follow(
    make_settings: SettingsFactory, database_url: str, handler: HandlerServer
) -> None:
    # The handler is down (503) with replies waiting; its URL is changed: the same
    # handler (its id, its forwards) delivers them to the new URL, nothing rerouted.
    handler.scripts["/old"] = lambda n: (503, 0.0)
    handler_id = await register(database_url, user_data="42", url=handler.url("/old"))
    settings = make_settings(admin_tokens=ADMIN, **FAST)
    async with running(create_app(settings)) as client:
        await _replies(client, 2)
        await _until(database_url, "SELECT 1 FROM forward_attempts")
        changed = await client.patch(
            f"/api/v1/handlers/{handler_id}",
            json={"url": handler.url("/new"), "max_in_flight": 3, "final_statuses": [422]},
            headers=AUTH,
        )
        await _until(database_url, "SELECT 1 FROM forwards HAVING bool_and(state = 'done')")
        nothing = await client.patch(f"/api/v1/handlers/{handler_id}", json={}, headers=AUTH)
        bad = await client.patch(f"/api/v1/handlers/{handler_id}", json={"rate": -1}, headers=AUTH)
        unknown = await client.patch(
            f"/api/v1/handlers/{handler_id}", json={"user_data": "43"}, headers=AUTH
        )
        missing = await client.patch("/api/v1/handlers/999999", json={"rate": 1}, headers=AUTH)
    assert changed.status_code == 200, changed.text
    view = changed.json()
    assert (view["id"], view["user_data"], view["url"]) == (handler_id, "42", handler.url("/new"))
    assert (view["max_in_flight"], view["final_statuses"]) == (3, [422])
    forwards = await fetch(database_url, "SELECT handler_id, state FROM forwards")
    assert forwards == [{"handler_id": handler_id, "state": "done"}] * 2
    assert len(handler.on("/new")) == 2
    assert nothing.status_code == 400
    assert (bad.status_code, "rate must be above 0" in bad.json()["error"]) == (400, True)
    assert unknown.status_code == 400
    assert missing.status_code == 404


async def test_max_in_flight_holds_for_a_slow_handler(
    make_settings: SettingsFactory, database_url: str, handler: HandlerServer
) -> None:
    handler.scripts["/slow"] = lambda n: (200, 0.3)
    await register(database_url, user_data="42", url=handler.url("/slow"), max_in_flight=2)
    async with running(create_app(make_settings(dispatch_concurrency=16, **FAST))) as client:
        await _replies(client, 8)
        await _until(
            database_url,
            "SELECT 1 FROM forwards HAVING count(*) = 8 AND bool_and(state = 'done')",
        )
    assert handler.most_in_flight == 2
    assert len(handler.on("/slow")) == 8


async def test_a_rate_spaces_the_requests(
    make_settings: SettingsFactory, database_url: str, handler: HandlerServer
) -> None:
    await register(database_url, user_data="42", url=handler.url("/rated"), rate=10.0)
    async with running(create_app(make_settings(**FAST))) as client:
        await _replies(client, 6)
        await _until(
            database_url,
            "SELECT 1 FROM forwards HAVING count(*) = 6 AND bool_and(state = 'done')",
        )
    times = sorted(r.at for r in handler.on("/rated"))
    # Six starts at 10 a second: at least five intervals of 0.1 s (a lower bound: a slow
    # machine only spreads them more).
    assert times[-1] - times[0] >= 0.45


def _verifies(secret: str, request: Any) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except Exception:
        return False
    return True


async def test_a_rotated_secret_signs_beside_the_old_one_during_the_overlap(
    make_settings: SettingsFactory, database_url: str, handler: HandlerServer
) -> None:
    old = new_secret()
    handler_id = await register(
        database_url, user_data="42", url=handler.url("/signed"), secret=old
    )
    async with running(create_app(make_settings(admin_tokens=ADMIN, **FAST))) as client:
        rotated = await client.post(
            f"/api/v1/handlers/{handler_id}/rotate-secret?overlap=3600", headers=AUTH
        )
        new = rotated.json()["secret"]
        await _replies(client, 1, prefix="a")
        await _until(database_url, "SELECT 1 FROM forwards WHERE state = 'done'")
        ended = await client.post(
            f"/api/v1/handlers/{handler_id}/rotate-secret?overlap=0", headers=AUTH
        )
        newest = ended.json()["secret"]
        await _replies(client, 1, prefix="b")
        await _until(
            database_url, "SELECT 1 FROM forwards HAVING count(*) FILTER (WHERE state='done') = 2"
        )
    during, after = handler.on("/signed")
    # During the overlap: two signatures; a handler on either secret verifies.
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert _verifies(old, during)
    assert _verifies(new, during)
    # After it: the newest secret's alone; the one before no longer verifies.
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert _verifies(newest, after)
    assert not _verifies(new, after)
    assert rotated.json()["handler"]["previous_secret_until"] is not None


async def test_the_owners_hear_when_their_handler_fails_and_recovers(
    make_settings: SettingsFactory, database_url: str, handler: HandlerServer
) -> None:
    secret = new_secret()
    handler.scripts["/flaky"] = lambda n: (500, 0.0) if n < 2 else (200, 0.0)
    await register(
        database_url,
        user_data="42",
        url=handler.url("/flaky"),
        secret=secret,
        notify_url=handler.url("/team-chat"),
    )
    async with running(create_app(make_settings(**FAST))) as client:
        await _replies(client, 1)
        await _until(database_url, "SELECT 1 FROM forwards WHERE state = 'done'")
        await _until(
            database_url, "SELECT 1 FROM handler_notices HAVING bool_and(sent_at IS NOT NULL)"
        )
        async with asyncio.timeout(10):
            while len(handler.on("/team-chat")) < 2:  # noqa: ASYNC110 (the handler records)
                await asyncio.sleep(0.05)
    notices = handler.on("/team-chat")
    kinds = [n.json["type"] for n in notices]
    # One notice at the first failure (not one per failure), one at the recovery.
    assert kinds == ["handler.failing", "handler.recovered"]
    assert notices[0].json["handler"]["user_data"] == "42"
    assert "500" in notices[0].json["reason"]
    assert all(_verifies(secret, n) for n in notices)


async def test_a_handler_failing_too_long_is_disabled_its_forwards_wait(
    make_settings: SettingsFactory, database_url: str, handler: HandlerServer
) -> None:
    handler.scripts["/down"] = lambda n: (503, 0.0)
    handler_id = await register(
        database_url,
        user_data="42",
        url=handler.url("/down"),
        notify_url=handler.url("/on-call"),
    )
    settings = make_settings(handler_disable_after=timedelta(seconds=1), **FAST)
    async with running(create_app(settings)) as client:
        await _replies(client, 1)
        (row,) = await _until(
            database_url,
            "SELECT enabled, disabled_reason FROM handlers WHERE id = $1 AND NOT enabled",
            handler_id,
        )
        async with asyncio.timeout(10):
            while "handler.disabled" not in [n.json["type"] for n in handler.on("/on-call")]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        (forward,) = await fetch(database_url, "SELECT state FROM forwards")
    assert "no 2xx for 1 s while forwards waited" in row["disabled_reason"]
    assert forward["state"] == "pending"  # waiting, not dead: nothing lost
    assert [n.json["type"] for n in handler.on("/on-call")] == [
        "handler.failing",
        "handler.disabled",
    ]


async def test_notices_a_month_old_are_forgotten_once_sent_or_given_up(
    make_settings: SettingsFactory, database_url: str
) -> None:
    handler_id = await register(
        database_url, user_data="42", url="http://127.0.0.1:9/h", notify_url="http://127.0.0.1:9/n"
    )
    notice = (
        "INSERT INTO handler_notices (handler_id, kind, url, body, created_at, next_at, sent_at)"
        " VALUES ($1, 'failing', 'http://127.0.0.1:9/n', '\\x7b7d', now() - $2::text::interval,"
        " $3::text::timestamptz, $4::text::timestamptz)"
    )
    rows = [
        ("31 days", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"),  # sent: forgotten
        ("31 days", "infinity", None),  # given up on: forgotten
        ("31 days", "2999-01-01T00:00:00Z", None),  # still to be tried: kept
        ("1 day", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"),  # sent lately: kept
    ]
    for age, next_at, sent_at in rows:
        await fetch(database_url, notice, handler_id, age, next_at, sent_at)
    settings = make_settings(handler_disable_after=timedelta(seconds=1), **FAST)
    async with running(create_app(settings)):
        await _until(
            database_url,
            "SELECT 1 FROM handler_notices HAVING count(*) = 2",
        )
    kept = await fetch(
        database_url,
        "SELECT extract(day FROM now() - created_at)::int AS days, sent_at IS NULL AS unsent"
        " FROM handler_notices ORDER BY created_at",
    )
    assert kept == [{"days": 31, "unsent": True}, {"days": 1, "unsent": False}]


def _receiver(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"RECEIVER_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_handlers_update_and_rotate_secret_from_the_shell(database_url: str) -> None:
    added = _receiver(
        database_url,
        "handlers",
        "add",
        "--user-data",
        "shop-*",
        "--url",
        "http://127.0.0.1:9/h",
        "--final-statuses",
        "400,422",
        "--max-in-flight",
        "4",
    )
    assert added.returncode == 0, added.stderr
    handler = json.loads(added.stdout.splitlines()[0])
    assert (handler["final_statuses"], handler["max_in_flight"]) == ([400, 422], 4)
    updated = _receiver(
        database_url,
        "handlers",
        "update",
        str(handler["id"]),
        "--rate",
        "5",
        "--attempts",
        "3",
        "--first-retry",
        "10",
        "--clear",
        "max_in_flight",
        "--generate-secret",
    )
    assert updated.returncode == 0, updated.stderr
    view = json.loads(updated.stdout.splitlines()[0])
    assert (view["rate"], view["attempts"], view["first_retry"]) == (5.0, 3, 10.0)
    assert (view["max_in_flight"], view["signed"], view["id"]) == (None, True, handler["id"])
    assert "secret (shown once" in updated.stdout
    rotated = _receiver(
        database_url, "handlers", "rotate-secret", str(handler["id"]), "--overlap", "2h"
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "each forward carries the signatures of both secrets" in rotated.stdout
    refused = _receiver(database_url, "handlers", "update", str(handler["id"]), "--attempts", "0")
    assert (refused.returncode, "attempts must be 1 to 100" in refused.stderr) == (2, True)
    nothing = _receiver(database_url, "handlers", "update", str(handler["id"]))
    assert nothing.returncode == 2
    missing = _receiver(database_url, "handlers", "update", "999999", "--rate", "1")
    assert missing.returncode == 1


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("final_statuses", [200], "final_statuses are HTTP statuses of 300 to 599"),
        ("max_in_flight", 0, "max_in_flight must be 1 to 1000"),
        ("attempts", 101, "attempts must be 1 to 100"),
        ("first_retry", 0, "first_retry must be above 0"),
        ("notify_url", "ftp://x", "notify_url must be an http:// or https:// URL"),
    ],
)
async def test_a_policy_that_could_not_hold_is_refused_at_registration(
    make_settings: SettingsFactory, field: str, value: Any, said: str
) -> None:
    async with running(create_app(make_settings(admin_tokens=ADMIN))) as client:
        answer = await client.post(
            "/api/v1/handlers",
            json={"user_data": "x", "url": "http://127.0.0.1:9/h", field: value},
            headers=AUTH,
        )
    assert answer.status_code == 400, answer.text
    assert said in answer.json()["error"]
