"""`receiver simulate` against a real receiver: what it expects is what the receiver holds."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.app import create_app
from receiver.simulate import Mix, Plan, Signer, parse_mix, simulate
from receiver.simulate.plan import WINDOW
from testkit.support import fetch, serving, until_projected
from tests.conftest import SettingsFactory

SECRET = "simulated-subscription-secret"
# Every irregularity, often.
ROUGH = Mix(
    v2=0.5,
    history=0.6,
    failures=0.3,
    mo=0.5,
    duplicates=0.3,
    retries=0.3,
    second_subscription=0.3,
    out_of_order=0.5,
    odd=0.1,
)


async def holdings(database_url: str) -> dict[str, Any]:
    """What the receiver holds once its projector has caught up."""
    await until_projected(database_url)
    events = await fetch(database_url, "SELECT count(*) AS n FROM events")
    kept = await fetch(database_url, "SELECT state::text, count(*) AS n FROM events GROUP BY 1")
    states = {row["state"]: row["n"] for row in kept}
    messages = await fetch(
        database_url, "SELECT direction, status::text, count(*) AS n FROM messages GROUP BY 1, 2"
    )
    return {
        "events": events[0]["n"],
        "invalid": states.get("invalid", 0),
        "unhandled": states.get("unhandled", 0),
        "messages": sum(r["n"] for r in messages),
        "outbound": sum(r["n"] for r in messages if r["direction"] == "outbound"),
        "inbound": sum(r["n"] for r in messages if r["direction"] == "inbound"),
        "final_statuses": {
            r["status"]: r["n"]
            for r in sorted(messages, key=lambda r: r["status"])
            if r["direction"] == "outbound"
        },
    }


@pytest.fixture
async def webhook(make_settings: SettingsFactory) -> AsyncIterator[str]:
    """A receiver that checks CALLR's signature, behind a real uvicorn: its webhook URL."""
    settings = make_settings(callr_url_token=None, callr_hmac_secrets=SECRET, dispatcher=False)
    async with serving(create_app(settings)) as base:
        yield f"{base}/webhooks/callr"


async def test_the_receiver_holds_what_the_simulator_expects(
    webhook: str, database_url: str
) -> None:
    report = await simulate(
        webhook, Plan(150, ROUGH, seed=3), signer=Signer(SECRET), concurrency=8, duration=120
    )
    summary = report.summary()
    assert summary["unacknowledged"] == 0
    # The invalid events are refused (400) and kept; the rest stored.
    assert set(summary["answers"]) == {"200", "400"}
    assert summary["expected"]["invalid"] > 0
    assert summary["expected"]["unhandled"] > 0
    # Repeats, retries and second subscriptions were sent: more requests than events.
    assert summary["requests"] > summary["expected"]["events"] * 1.3
    assert summary["expected"]["inbound"] > 0
    assert set(summary["expected"]["final_statuses"]) >= {"delivered", "failed", "expired"}
    assert await holdings(database_url) == summary["expected"]


async def test_refused_deliveries_are_retried_a_bounded_number_of_times(
    webhook: str, database_url: str
) -> None:
    report = await simulate(
        webhook,
        Plan(3, Mix(duplicates=0, retries=0, second_subscription=0, mo=0), seed=4),
        signer=Signer("not-the-secret"),
        concurrency=4,
        duration=30,
        max_tries=3,
    )
    assert report.answers == {"401": report.planned * 3}
    assert report.unacknowledged == report.planned
    assert report.expected()["events"] == 0
    assert (await holdings(database_url))["events"] == 0


async def test_the_command_prints_and_writes_its_report(
    webhook: str, database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver",
        "simulate",
        "--url",
        webhook,
        "--secret",
        SECRET,
        "--messages",
        "40",
        "--concurrency",
        "4",
        "--seed",
        "9",
        "--mix",
        "mo=0.5,duplicates=0.2",
        "--json",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    written = json.loads(out.read_text())
    expected = written["expected"]
    assert f"expected   {expected['events']:,} distinct events" in stdout.decode()
    assert expected["outbound"] == 40
    assert await holdings(database_url) == expected


@pytest.mark.parametrize(
    ("path", "secret", "says"),
    [
        ("", SECRET, "404 from "),  # the URL without its token part, or a wrong one
        ("/wrong", SECRET, "404 from "),
        (None, "not-the-secret", "401: the receiver checks a signature"),
    ],
)
async def test_the_command_explains_the_answers_that_refuse_it(
    webhook: str, path: str | None, secret: str, says: str
) -> None:
    url = webhook if path is None else webhook.rsplit("/", 1)[0] + path
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver",
        "simulate",
        "--url",
        url,
        "--secret",
        secret,
        "--messages",
        "2",
        "--max-tries",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    assert says in stderr.decode()


@pytest.mark.parametrize(
    ("bad", "says"),
    [("colour=1", "unknown share"), ("mo=lots", "not a number"), ("mo=2", "between 0 and 1")],
)
def test_a_mix_is_read_and_checked(bad: str, says: str) -> None:
    assert parse_mix("mo=0.5, out-of-order=0").mo == 0.5
    assert parse_mix("").v2 == Mix().v2
    with pytest.raises(ValueError, match=says):
        parse_mix(bad)


def _times(value: object) -> list[datetime]:
    """Every time written anywhere in an event (v1's and v2's forms)."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in _times(v)]
    if isinstance(value, list):
        return [t for v in value for t in _times(v)]
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d.*", value):
        if value.startswith("0000"):
            return []
        return [datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=UTC)]
    return []


def test_no_event_tells_of_a_time_after_it_was_planned() -> None:
    """Sent at once, no event says an SMS was created, sent, delivered or answered in
    the future; the window of the last half hour is used whole."""
    made = datetime.now(UTC)
    deliveries = list(Plan(2000, ROUGH, seed=5).deliveries())
    times = [t for d in deliveries for t in _times(d.document)]
    assert len(times) > 10_000
    assert max(times) <= made
    assert min(times) >= made - timedelta(seconds=WINDOW + 1)
    replies = [d for d in deliveries if not d.outbound]
    assert replies
    assert {d.kind for d in deliveries} == {"sms", "invalid", "unhandled"}
