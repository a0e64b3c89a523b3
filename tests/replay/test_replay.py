from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from receiver.app import create_app
from receiver.callr.envelope import Envelope, parse_envelope
from receiver.db.engine import create_pool
from receiver.projection.projector import Projector
from receiver.replay import EventFilter, rebuild, replay, replay_range
from receiver.replay.resend import resend
from receiver.replay.workers import RangeWorkers, WorkerFailed
from receiver.reports import Report, report_of
from receiver.status import Status
from testkit.callr_events import lifecycle, mo_event, v1_event, v2_event
from testkit.support import example, fetch, running, serving, signed_headers, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

TOKEN_PATH = f"/webhooks/callr/{TEST_URL_TOKEN}"
C, P, S, Q, D, F = (
    Status.CREATED,
    Status.PENDING,
    Status.SENT,
    Status.REMOTE_QUEUED,
    Status.DELIVERED,
    Status.FAILED,
)

# Everything the projection writes, in an order that does not depend on row ids.
PROJECTED = {
    "messages": "SELECT * FROM messages ORDER BY sms_id",
    "transitions": (
        "SELECT sms_id, before, after, at, derived, event_id FROM transitions"
        " ORDER BY sms_id, at, before, after"
    ),
    "observations": "SELECT * FROM observations ORDER BY sms_id, at, status",
}


async def projected(url: str) -> dict[str, list[dict[str, Any]]]:
    return {table: await fetch(url, sql) for table, sql in PROJECTED.items()}


def generated_history(count: int, seed: int) -> list[bytes]:
    """Many SMS through whole lifecycles: v1, v2, with and without history, repeated, shuffled."""
    rng = random.Random(seed)
    bodies = []
    for n in range(count):
        end = rng.choice([(C, P, S, Q, D), (C, P, S, F), (C, S, D), (C, P)])
        steps = lifecycle(*end, gap=rng.randint(1, 30))
        for k in range(1, len(steps) + 1):
            if rng.random() < 0.25:
                continue  # not every step is reported
            build = v1_event if rng.random() < 0.5 else v2_event
            body = build(f"gen{n}-{k}", f"gen{n:05d}", steps[:k], with_history=rng.random() < 0.5)
            bodies.extend([body] * rng.randint(1, 2))
        if rng.random() < 0.2:
            bodies.append(mo_event(f"gen{n}-mo", f"genmo{n:03d}", sender="+33612345678"))
    rng.shuffle(bodies)
    return bodies


async def post_all(client: httpx.AsyncClient, bodies: list[bytes], *, wait: bool = True) -> None:
    """Post every body, 50 at a time; then (`wait`) until the projector has applied them."""
    for start in range(0, len(bodies), 50):
        answers = await asyncio.gather(
            *(client.post(TOKEN_PATH, content=body) for body in bodies[start : start + 50])
        )
        assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    if wait:
        await until_projected(client)


READ = "replay-read-token-for-tests"


def receiver_command(
    database_url: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`receiver ARGS` as a process, against `database_url`."""
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "RECEIVER_DATABASE_URL": database_url},
        timeout=timeout,
        check=False,
    )


async def ingest(make_settings: SettingsFactory, bodies: list[bytes]) -> None:
    """`bodies` through live ingest, the dispatcher off."""
    async with running(create_app(make_settings(dispatcher=False))) as client:
        await post_all(client, bodies)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    pool = await create_pool(database_url, size=4, command_timeout=60)
    yield pool
    await pool.close()


@pytest.mark.parametrize(("jobs", "in_processes"), [(1, False), (2, False), (5, False), (3, True)])
async def test_a_rebuild_equals_live_ingest_row_for_row(
    make_settings: SettingsFactory, database_url: str, pool: Any, jobs: int, in_processes: bool
) -> None:
    await ingest(make_settings, generated_history(150, seed=11))
    live = await projected(database_url)
    assert len(live["messages"]) > 100
    # Several ranges of SMS at once, in this process or each in its own: none lost
    # or doubled at their edges.
    workers = (
        RangeWorkers(jobs).use(database_url, batch=97, command_timeout=60) if in_processes else None
    )
    try:
        summary = await rebuild(pool, batch=97, jobs=jobs, workers=workers)
    finally:
        if workers is not None:
            workers.close()
    assert summary.replayed == summary.total > 400
    rebuilt = await projected(database_url)
    # Where several events report one step, the one kept as its source is the first
    # applied: live, the order they were stored in (two batches can commit out of
    # the order received), in a rebuild, the order received.
    assert without_provenance(rebuilt) == without_provenance(live)
    await assert_each_source_reports_its_step(database_url)


async def test_a_rebuild_worker_that_fails_is_reported_not_waited_for() -> None:
    workers = RangeWorkers(2).use(
        "postgresql://postgres@127.0.0.1:1/none", batch=10, command_timeout=5
    )
    try:
        with pytest.raises(WorkerFailed, match=r"rebuild worker [01]: ConnectionRefusedError"):
            await asyncio.wait_for(
                workers.replay([(None, "m"), ("m", None)], advance=print, stop=None), 30
            )
    finally:
        workers.close()


async def test_rebuild_workers_stop_when_told_and_say_how_far_they_got(
    make_settings: SettingsFactory, database_url: str
) -> None:
    await ingest(make_settings, generated_history(40, seed=13))
    stop = asyncio.Event()
    stop.set()  # as Ctrl-C before the first page
    workers = RangeWorkers(2).use(database_url, batch=10, command_timeout=30)
    try:
        summaries = await asyncio.wait_for(
            workers.replay([(None, "gen00020"), ("gen00020", None)], advance=print, stop=stop),
            30,
        )
    finally:
        workers.close()
    assert [s.replayed for s in summaries] == [0, 0]
    # Not told to stop, the same workers' ranges are replayed whole.
    workers = RangeWorkers(2).use(database_url, batch=10, command_timeout=30)
    try:
        summaries = await workers.replay(
            [(None, "gen00020"), ("gen00020", None)], advance=lambda n: None, stop=None
        )
    finally:
        workers.close()
    (tied,) = await fetch(database_url, "SELECT count(*) AS n FROM events WHERE sms_id >= 'gen'")
    assert sum(s.replayed for s in summaries) == tied["n"] > 0


async def test_a_rebuild_while_webhooks_arrive_loses_nothing(
    make_settings: SettingsFactory, database_url: str, pool: Any
) -> None:
    bodies = generated_history(120, seed=12)
    early, late = bodies[: len(bodies) // 2], bodies[len(bodies) // 2 :]
    # A projector in small batches: behind when the rebuild starts, and working beside it.
    settings = make_settings(dispatcher=False, projector_batch_max=5)
    async with running(create_app(settings)) as client:
        await post_all(client, early, wait=False)
        (behind,) = await fetch(database_url, "SELECT count(*) AS n FROM projection_pending")
        assert behind["n"] > 0
        await asyncio.gather(rebuild(pool, batch=20), post_all(client, late))
    during = await projected(database_url)
    await rebuild(pool)  # the same events, calmly
    calm = await projected(database_url)
    # Which event reported a step first depends on processing order, and live events
    # overtook older ones during the rebuild; everything else is identical.
    assert without_provenance(during) == without_provenance(calm)
    await assert_each_source_reports_its_step(database_url)


async def assert_each_source_reports_its_step(url: str) -> None:
    """Every step's source is an event of its SMS, and every observation's too."""
    for table in ("transitions", "observations"):
        unsourced = await fetch(
            url,
            f"SELECT t.* FROM {table} t WHERE NOT EXISTS"  # noqa: S608 (a table of two)
            " (SELECT 1 FROM events e WHERE e.event_id = t.event_id AND e.sms_id = t.sms_id)",
        )
        assert unsourced == [], table


def without_provenance(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {
        table: [{k: v for k, v in row.items() if k != "event_id"} for row in table_rows]
        for table, table_rows in rows.items()
    }


async def store_as_refused(url: str, event_id: str, body: bytes) -> None:
    """Store `body` as an earlier parser would have: invalid, under `event_id`."""
    await fetch(
        url,
        "INSERT INTO events (event_id, received_at, state, reason, fingerprint, body)"
        " VALUES ($1, now(), 'invalid', 'old parser', '\\x00', $2)",
        event_id,
        body,
    )


async def test_replay_processes_an_event_an_older_parser_refused(
    make_settings: SettingsFactory, database_url: str, pool: Any
) -> None:
    body = example("v1-sms.mt.status_update")
    # As if an earlier version of the parser had refused this event.
    await store_as_refused(database_url, "942214623649723405HGNSmlw2sOrjq", body)
    summary = await replay(pool, EventFilter(states=("invalid",)))
    assert (summary.replayed, summary.changed) == (1, 1)
    (event,) = await fetch(database_url, "SELECT state, reason, type, sms_id FROM events")
    assert event == {
        "state": "processed",
        "reason": None,
        "type": "sms.mt.status_update",
        "sms_id": "0lwlnvlh",
    }
    (message,) = await fetch(database_url, "SELECT status FROM messages")
    assert message["status"] == "remote-queued"


async def test_a_body_kept_under_its_hash_is_stored_anew_under_its_own_id(
    make_settings: SettingsFactory, database_url: str, pool: Any
) -> None:
    body = example("v1-sms.mt.status_update")
    # As if an earlier parser had not even found the event id: kept by its hash.
    await store_as_refused(database_url, "sha256:abc", body)
    summary = await replay(pool, EventFilter())
    assert (summary.replayed, summary.reingested) == (1, 1)
    events = {
        row["event_id"]: row
        for row in await fetch(database_url, "SELECT event_id, state, reason FROM events")
    }
    assert events["sha256:abc"]["state"] == "invalid"
    assert events["sha256:abc"]["reason"] == "stored again as event 942214623649723405HGNSmlw2sOrjq"
    assert events["942214623649723405HGNSmlw2sOrjq"]["state"] == "processed"
    # The new delivery carries the content fingerprint that live ingest gives it,
    # so that CALLR's own retry of the event is recognised as the same content.
    parsed = parse_envelope(body)
    assert isinstance(parsed, Envelope)
    assert parsed.fingerprint
    (delivery,) = await fetch(database_url, "SELECT fingerprint, conflict FROM deliveries")
    assert (delivery["fingerprint"], delivery["conflict"]) == (parsed.fingerprint, False)
    (message,) = await fetch(database_url, "SELECT status FROM messages")
    assert message["status"] == "remote-queued"


async def test_an_event_that_fails_again_stays_invalid_with_its_reason(
    make_settings: SettingsFactory, database_url: str, pool: Any
) -> None:
    async with running(create_app(make_settings())) as client:
        response = await client.post(TOKEN_PATH, content=b'{"event_id": "x", "try": "one"}')
    assert response.status_code == 400
    summary = await replay(pool, EventFilter())
    assert (summary.replayed, summary.changed) == (1, 0)
    (event,) = await fetch(database_url, "SELECT state, reason FROM events")
    assert event["state"] == "invalid"
    assert event["reason"] == "field 'type' is missing"


async def test_replaying_twice_changes_nothing_the_second_time(
    make_settings: SettingsFactory, database_url: str, pool: Any
) -> None:
    await ingest(make_settings, generated_history(40, seed=13))
    before = await projected(database_url)
    events = await fetch(database_url, "SELECT * FROM events ORDER BY event_id")
    forwards = await fetch(database_url, "SELECT event_id, state FROM forwards ORDER BY id")
    first = await replay(pool, EventFilter())
    second = await replay(pool, EventFilter())
    assert (first.changed, second.changed) == (0, 0)
    assert await projected(database_url) == before
    assert await fetch(database_url, "SELECT * FROM events ORDER BY event_id") == events
    assert await fetch(database_url, "SELECT event_id, state FROM forwards ORDER BY id") == forwards


async def test_a_stopped_replay_says_so_and_a_rerun_finishes(
    make_settings: SettingsFactory, database_url: str, pool: Any
) -> None:
    await ingest(make_settings, generated_history(30, seed=14))
    stop = asyncio.Event()
    stopped = await replay(pool, EventFilter(), batch=10, advance=lambda n: stop.set(), stop=stop)
    assert stopped.stopped
    assert stopped.replayed == 10
    assert "run the same command again" in stopped.line()
    finished = await replay(pool, EventFilter(), batch=10)
    assert not finished.stopped
    assert finished.replayed == finished.total


async def test_filters_select_by_sms_and_type(
    make_settings: SettingsFactory, database_url: str, pool: Any
) -> None:
    await ingest(make_settings, generated_history(30, seed=15))
    one_sms = await replay(pool, EventFilter(sms_id="GEN00003"))
    expected = await fetch(
        database_url, "SELECT count(*) AS n FROM events WHERE sms_id = 'gen00003'"
    )
    assert one_sms.replayed == expected[0]["n"] > 0
    mo_only = await replay(pool, EventFilter(types=("sms.mo",)))
    mos = await fetch(database_url, "SELECT count(*) AS n FROM events WHERE type = 'sms.mo'")
    assert mo_only.replayed == mos[0]["n"]


async def test_resending_to_a_second_receiver_is_duplicate_the_second_time(
    make_settings: SettingsFactory, database_url: str, empty_database_url: str, pool: Any
) -> None:
    from receiver.db import migrate

    body = example("v1-sms.mo")
    settings = make_settings(dispatcher=False, callr_url_token=None, callr_hmac_secrets="s3cret")
    async with running(create_app(settings)) as client:
        for name in ("v1-sms.mo", "v1-sms.mt.status_update", "v2.sms.inbound.received"):
            body = example(name)
            response = await client.post(
                "/webhooks/callr", content=body, headers=signed_headers(body, "s3cret")
            )
            assert response.status_code == 200
    await asyncio.to_thread(migrate.upgrade, empty_database_url)
    staging = create_app(settings.model_copy(update={"database_url": empty_database_url}))
    async with serving(staging) as base:
        first = await resend(pool, EventFilter(), f"{base}/webhooks/callr")
        second = await resend(pool, EventFilter(), f"{base}/webhooks/callr")
    assert (first.sent, dict(first.classes), dict(first.results)) == (3, {"2xx": 3}, {"stored": 3})
    assert dict(second.results) == {"duplicate": 3}
    sent = await fetch(database_url, "SELECT event_id, body FROM events ORDER BY event_id")
    received = await fetch(
        empty_database_url, "SELECT event_id, body FROM events ORDER BY event_id"
    )
    assert sent == received


def test_dry_run_counts_and_changes_nothing(database_url: str) -> None:
    async def seed() -> dict[str, list[dict[str, Any]]]:
        from receiver.settings import Settings

        settings = Settings(database_url=database_url, callr_url_token=TEST_URL_TOKEN)
        async with running(create_app(settings)) as client:
            await post_all(client, generated_history(10, seed=16))
            await client.post(TOKEN_PATH, content=b"not json")
        return {
            **(await projected(database_url)),
            "events": await fetch(database_url, "SELECT * FROM events ORDER BY event_id"),
        }

    before = asyncio.run(seed())
    result = receiver_command(database_url, "replay", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].split()[0] == str(len(before["events"]))
    assert any("invalid" in line and "(no type)" in line for line in lines)
    after = asyncio.run(_snapshot(database_url))
    assert after == before


async def _snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    return {
        **(await projected(url)),
        "events": await fetch(url, "SELECT * FROM events ORDER BY event_id"),
    }


def test_the_rebuild_command_with_several_jobs_gives_back_what_live_ingest_made(
    database_url: str,
) -> None:
    async def seed() -> dict[str, list[dict[str, Any]]]:
        from receiver.settings import Settings

        settings = Settings(database_url=database_url, callr_url_token=TEST_URL_TOKEN)
        async with running(create_app(settings)) as client:
            await post_all(client, generated_history(60, seed=17))
        return await projected(database_url)

    live = asyncio.run(seed())
    refused = receiver_command(database_url, "rebuild", "--jobs", "0")
    assert refused.returncode == 2
    assert "--jobs: '0' is not a whole number from 1 to 16" in refused.stderr
    # A batch of 0 once emptied the tables, rebuilt nothing and exited 0.
    no_batch = receiver_command(database_url, "rebuild", "--batch", "0")
    assert no_batch.returncode == 2
    assert "--batch: '0' is not a whole number from 1 to 100000" in no_batch.stderr
    assert asyncio.run(projected(database_url)) == live
    result = receiver_command(database_url, "rebuild", "--jobs", "3", "--batch", "50", timeout=120)
    assert result.returncode == 0, result.stderr
    events = asyncio.run(fetch(database_url, "SELECT count(*) AS n FROM events"))[0]["n"]
    summary, swapped = result.stdout.splitlines()[-2:]
    assert summary.startswith(f"rebuilt from {events} of {events} events")
    assert swapped.startswith("the new records put in place in ")
    assert without_provenance(asyncio.run(projected(database_url))) == without_provenance(live)


async def test_a_replay_whose_pages_cannot_be_read_fails_instead_of_waiting() -> None:
    """Found by the rebuild's worker processes: a page reader that failed left the
    replay waiting for its next page for ever."""
    unreachable = await create_pool(
        "postgresql://postgres@127.0.0.1:1/none", size=2, command_timeout=5
    )
    try:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(
                replay_range(unreachable, (None, None), batch=10, advance=print, stop=None), 20
            )
    finally:
        await unreachable.close()


async def test_a_rebuild_with_no_batch_to_apply_refuses_before_emptying_anything(
    make_settings: SettingsFactory, database_url: str, pool: Any
) -> None:
    await ingest(make_settings, generated_history(5, seed=18))
    before = await projected(database_url)
    with pytest.raises(ValueError, match="a batch of at least 1 event"):
        await rebuild(pool, batch=0)
    assert await projected(database_url) == before
    assert before["messages"]


def test_a_resend_that_the_other_receiver_did_not_take_fails_the_command(
    database_url: str,
) -> None:
    async def seed() -> None:
        from receiver.settings import Settings

        settings = Settings(database_url=database_url, callr_url_token=TEST_URL_TOKEN)
        async with running(create_app(settings)) as client:
            await post_all(client, [example("v1-sms.mo")])

    asyncio.run(seed())
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    result = receiver_command(
        database_url, "replay", "--to", f"http://127.0.0.1:{closed}/webhooks/callr"
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[-1] == "sent 1 events: 1 error (ConnectError)"


async def test_a_parked_event_is_listed_with_its_reason_and_applied_again_by_replay_event(
    make_settings: SettingsFactory, database_url: str, pool: Any
) -> None:
    body = mo_event("parked-mo", "PARKED1", sender="+33600000042")
    async with running(create_app(make_settings(projector=False, api_tokens=READ))) as client:
        assert (await client.post(TOKEN_PATH, content=body)).status_code == 200
        # Parked as the projector would park it: a value the database refuses (a
        # user_data too large for its index row, as an earlier parser let through).
        parsed = parse_envelope(body)
        assert isinstance(parsed, Envelope)
        report = report_of("parked-mo", datetime.now(UTC), parsed)
        assert isinstance(report, Report)
        projector = Projector(pool)
        large = secrets.token_urlsafe(4500)
        projector.stored([replace(report, sms=report.sms._replace(user_data=large))])
        assert await projector.drain() == 1
        listed = await client.get(
            "/api/v1/events?state=invalid", headers={"authorization": f"Bearer {READ}"}
        )
    (item,) = listed.json()["items"]
    assert item["event_id"] == "parked-mo"
    assert item["reason"].startswith("the event could not be applied (54000)")
    assert await fetch(database_url, "SELECT 1 FROM messages") == []

    # The cause fixed (here: the event's own body, read by today's parser, is fine).
    result = receiver_command(database_url, "replay", "--event", "parked-mo")
    assert result.returncode == 0, result.stderr
    assert "replayed 1 of 1 events (1 processed); 1 changed state" in result.stdout
    (event,) = await fetch(database_url, "SELECT state, reason FROM events")
    assert event == {"state": "processed", "reason": None}
    assert await fetch(database_url, "SELECT sms_id FROM messages") == [{"sms_id": "parked1"}]
    (forward,) = await fetch(database_url, "SELECT event_id, state FROM forwards")
    assert forward == {"event_id": "parked-mo", "state": "unrouted"}
