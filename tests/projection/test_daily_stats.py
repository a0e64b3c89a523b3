"""Stats over whole days read kept rows: they must always equal a count of the messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from receiver.api.stats import stats_of
from receiver.app import create_app
from receiver.callr.envelope import Envelope, parse_envelope
from receiver.projection.daily_stats import AHEAD, day_start, maintain, refresh, utc_day
from receiver.projection.records import project
from receiver.reports import Report
from receiver.status import Status
from testkit.callr_events import BASE_TIME, lifecycle, mo_event, v1_event, v2_event
from testkit.support import fetch, running, until_a_lock_wait, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

TOKEN = "dashboards-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
WEBHOOK = f"/webhooks/callr/{TEST_URL_TOKEN}"
C, P, S, D, F, E = (
    Status.CREATED,
    Status.PENDING,
    Status.SENT,
    Status.DELIVERED,
    Status.FAILED,
    Status.EXPIRED,
)
DAY0 = day_start(utc_day(BASE_TIME))
# Three whole days, and a few hours on either side that are counted live.
WINDOW = {
    "since": (DAY0 - timedelta(hours=5)).isoformat(),
    "until": (DAY0 + timedelta(days=3, hours=7)).isoformat(),
}
GROUPINGS = (None, "network", "user_data", "hour", "day")


@pytest.fixture
async def client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(api_tokens=TOKEN, dispatcher=False)
    async with running(create_app(settings)) as client:
        yield client


async def send(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post(WEBHOOK, content=body)
    assert response.status_code == 200, response.text
    await until_projected(client)


async def stats(client: httpx.AsyncClient, group: str | None, **window: str) -> Any:
    params = dict(window or WINDOW)
    if group:
        params["group_by"] = group
    response = await client.get("/api/v1/stats", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


_KEYS = {
    None: "NULL",
    "network": "network",
    "user_data": "user_data",
    "hour": "date_trunc('hour', created_at, 'UTC')",
    "day": "date_trunc('day', created_at, 'UTC')",
}


async def counted(url: str, group: str | None, since: str, until: str) -> list[Any]:
    """What the stats must say, counted straight from the messages with SQL's own percentiles."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            f"""
            SELECT {_KEYS[group]} AS key, count(*) AS total,
                percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (
                    ORDER BY extract(epoch FROM delivered_at - sent_at)
                ) FILTER (WHERE status = 'delivered') AS latency
            FROM messages
            WHERE direction = 'outbound' AND created_at >= $1 AND created_at < $2
            GROUP BY 1
            """,  # noqa: S608 - the key is one of the constants above
            datetime.fromisoformat(since),
            datetime.fromisoformat(until),
        )
        by_status = await conn.fetch(
            f"""
            SELECT {_KEYS[group]} AS key, status::text, count(*) AS n FROM messages
            WHERE direction = 'outbound' AND created_at >= $1 AND created_at < $2
            GROUP BY 1, 2
            """,  # noqa: S608
            datetime.fromisoformat(since),
            datetime.fromisoformat(until),
        )
        inbound = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE direction = 'inbound'"
            " AND created_at >= $1 AND created_at < $2",
            datetime.fromisoformat(since),
            datetime.fromisoformat(until),
        )
    finally:
        await conn.close()
    expected = []
    for row in sorted(rows, key=lambda r: (r["key"] is None, str(r["key"]))):
        key = row["key"].isoformat() if isinstance(row["key"], datetime) else row["key"]
        statuses = {r["status"]: r["n"] for r in by_status if r["key"] == row["key"]}
        latency = row["latency"]
        expected.append(
            {
                "key": key,
                "total": row["total"],
                "by_status": {s.value: statuses.get(s.value, 0) for s in Status},
                "latency": [pytest.approx(float(v)) for v in latency] if latency else None,
            }
        )
    return [*expected, {"mo_received": inbound}]


def answered(body: Any, group: str | None) -> list[Any]:
    groups = body["groups"] if group else [body["outbound"]] if body["outbound"]["total"] else []
    result = []
    for g in groups:
        key = g["key"]
        if group in ("hour", "day"):
            key = datetime.fromisoformat(key).isoformat()
        latency = g["latency_seconds"]
        result.append(
            {
                "key": key,
                "total": g["total"],
                "by_status": g["by_status"],
                "latency": [latency["p50"], latency["p90"], latency["p99"]] if latency else None,
            }
        )
    return [*result, {"mo_received": body["mo_received"]}]


async def assert_exact(client: httpx.AsyncClient, url: str, **window: str) -> None:
    for group in GROUPINGS:
        body = await stats(client, group, **window)
        want = await counted(url, group, **(window or WINDOW))
        assert answered(body, group) == want, group


async def traffic(client: httpx.AsyncClient) -> None:
    """Forty outbound SMS and some MOs, every few hours over four days, in every outcome."""
    outcomes = [(C, S, D), (C, P, S, F), (C, S, E), (C, P), (C, S)]
    for n in range(40):
        start = DAY0 - timedelta(hours=4) + timedelta(hours=2 * n + n % 3, minutes=n)
        steps = lifecycle(*outcomes[n % len(outcomes)], start=start, gap=1 + n % 7)
        if n % 2:
            await send(client, v1_event(f"d-{n}", f"day{n:05d}", steps, user_data=f"u{n % 4}"))
        else:
            await send(client, v2_event(f"d-{n}", f"day{n:05d}", steps))
        if n % 5 == 0:
            await send(client, mo_event(f"dmo-{n}", f"DMO{n:05d}", sender=f"+{n}", at=start))


async def keep_up(database_url: str) -> int:
    """What the background task does every minute."""
    conn = await asyncpg.connect(database_url)
    try:
        return await maintain(conn)
    finally:
        await conn.close()


async def window_days(database_url: str) -> tuple[int, int]:
    """Of the three whole days of WINDOW: how many are kept, how many marked as changed."""
    rows = await fetch(
        database_url,
        "SELECT (SELECT count(*) FROM stats_days WHERE day >= $1 AND day < $1 + 3) AS kept,"
        " (SELECT count(DISTINCT day) FROM stats_changes WHERE day >= $1 AND day < $1 + 3)"
        " AS marked",
        DAY0.date(),
    )
    return rows[0]["kept"], rows[0]["marked"]


async def test_whole_days_equal_a_count_of_the_messages(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await traffic(client)
    # Three days never counted: more than a request counts itself, so they are
    # counted live and left marked for the background task.
    await assert_exact(client, database_url)
    assert await window_days(database_url) == (0, 3)
    assert await keep_up(database_url) >= 3
    assert await window_days(database_url) == (3, 0)
    # Read again, from the kept rows alone.
    await assert_exact(client, database_url)
    # Windows that start and end on day boundaries, and one inside a day.
    await assert_exact(
        client, database_url, since=DAY0.isoformat(), until=(DAY0 + timedelta(days=2)).isoformat()
    )
    await assert_exact(
        client,
        database_url,
        since=(DAY0 + timedelta(hours=3)).isoformat(),
        until=(DAY0 + timedelta(hours=20)).isoformat(),
    )


async def test_late_reports_change_the_days_already_kept(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await traffic(client)
    before = await stats(client, None)
    await keep_up(database_url)
    # day00003 was left pending; day00004 was sent: both get their outcome later, and
    # day00030's creation time turns out to be earlier than first reported, on the
    # day before, so that it leaves a day nothing else changes.
    for sms_id, steps in (
        ("day00003", lifecycle(C, P, S, D, start=DAY0 + timedelta(hours=3, minutes=3), gap=5)),
        ("day00004", lifecycle(C, S, F, start=DAY0 + timedelta(hours=8, minutes=5))),
        ("day00030", lifecycle(C, S, D, start=DAY0 + timedelta(days=1, hours=20), gap=3)),
    ):
        await send(client, v2_event(f"late-{sms_id}", sms_id, steps))
    assert await window_days(database_url) == (3, 3)
    after = await stats(client, None)
    assert after["outbound"]["by_status"] != before["outbound"]["by_status"]
    await assert_exact(client, database_url)
    await keep_up(database_url)
    assert await window_days(database_url) == (3, 0)
    await assert_exact(client, database_url)
    # One late report: a request recounts that day itself.
    late = lifecycle(C, S, E, start=DAY0 + timedelta(days=1, hours=2, minutes=14))
    await send(client, v2_event("late-one", "day00014", late))
    assert await window_days(database_url) == (3, 1)
    await assert_exact(client, database_url)
    assert await window_days(database_url) == (3, 0)


async def test_a_change_the_refresh_did_not_see_keeps_the_day_stale(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await traffic(client)
    await stats(client, None)
    day = utc_day(DAY0 + timedelta(days=1))
    late = parse_envelope(
        v2_event("unseen", "day00014", lifecycle(C, S, D, start=day_start(day), gap=4))
    )
    assert isinstance(late, Envelope)
    assert late.sms is not None
    writer, refresher = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        async with writer.transaction():
            report = Report("unseen", BASE_TIME, late.emitted_at, late.sms)
            await project(writer, [report])
            # The day is refreshed while the change is not committed yet.
            await refresher.execute("INSERT INTO stats_changes (day) VALUES ($1)", day)
            await refresh(refresher, [day])
        assert await refresher.fetchval("SELECT count(*) FROM stats_changes WHERE day = $1", day)
    finally:
        await writer.close()
        await refresher.close()
    await assert_exact(client, database_url)


async def test_a_refresh_that_waited_for_another_counts_what_was_committed_meanwhile(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """Refreshes take turns on a lock of their transaction (it holds behind a pooler);
    the one that waited reads a snapshot taken after its wait, not before it."""
    await traffic(client)
    await keep_up(database_url)
    day = utc_day(DAY0 + timedelta(days=1))
    first, waiting = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        async with first.transaction(isolation="repeatable_read"):
            # Another refresh holds the turn ...
            await first.execute("LOCK TABLE stats_rows IN EXCLUSIVE MODE")
            await waiting.execute("INSERT INTO stats_changes (day) VALUES ($1)", day)
            refreshing = asyncio.create_task(refresh(waiting, [day]))
            await until_a_lock_wait(first, waiting.get_server_pid())
            # ... while a late report for the day is committed.
            late = lifecycle(C, S, F, start=day_start(day) + timedelta(hours=4))
            await send(client, v2_event("late-while-waiting", "day00015", late))
        await refreshing
    finally:
        await first.close()
        await waiting.close()
    assert await window_days(database_url) == (3, 0)
    await assert_exact(client, database_url)


async def test_upkeep_compacts_markers_and_counts_marked_and_recent_days(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await traffic(client)
    # Every day the traffic touched (marked as it was stored: the window's three and
    # the two at its edges) and the last 92, counted ahead.
    await stats(client, None)
    assert await keep_up(database_url) == 5 + AHEAD
    assert await window_days(database_url) == (3, 0)
    today = utc_day(datetime.now(UTC))
    ahead = "SELECT count(*) AS n FROM stats_days WHERE day >= $1::date - $2::int AND day < $1"
    assert (await fetch(database_url, ahead, today, AHEAD))[0]["n"] == AHEAD
    assert await keep_up(database_url) == 0
    kept, other = utc_day(DAY0 + timedelta(days=1)), utc_day(DAY0 + timedelta(days=30))
    await fetch(
        database_url,
        "INSERT INTO stats_changes (day)"
        " SELECT d FROM unnest($1::date[]) d, generate_series(1, 50) RETURNING 1",
        [kept, other],
    )
    assert await keep_up(database_url) == 2
    remaining = await fetch(database_url, "SELECT DISTINCT day FROM stats_changes")
    assert all(r["day"] >= today for r in remaining)
    await assert_exact(client, database_url)


async def test_latency_by_network_or_user_data_is_bucketed(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """Exact seconds without grouping; bucket lower bounds per network and user_data."""
    for n, gap in enumerate((3, 17, 95, 400, 4000)):
        start = DAY0 + timedelta(days=1, hours=n)
        await send(
            client, v2_event(f"b-{n}", f"buck{n:04d}", lifecycle(C, S, D, start=start, gap=gap))
        )
    for window in (
        WINDOW,  # a kept day (counted by the request: one day)
        {
            "since": (DAY0 + timedelta(days=1)).isoformat(),
            "until": (DAY0 + timedelta(days=1, hours=23)).isoformat(),
        },
    ):
        exact = (await stats(client, None, **window))["outbound"]["latency_seconds"]
        by_network = (await stats(client, "network", **window))["groups"][0]["latency_seconds"]
        by_user_data = (await stats(client, "user_data", **window))["groups"][0]["latency_seconds"]
        assert exact["p50"] == 95
        assert by_network["p50"] == by_user_data["p50"] == 90
        assert by_network["p99"] == pytest.approx(300 + (3600 - 300) * 0.96)
        # The overview's overall figures beside its table by network: the API's own,
        # exact seconds, not a sum of the buckets.
        since, until = (datetime.fromisoformat(window[k]) for k in ("since", "until"))
        conn = await asyncpg.connect(database_url)
        try:
            overview = await stats_of(conn, since, until, "network", overall=True, traffic=False)
        finally:
            await conn.close()
        outbound: Any = overview["outbound"]
        assert outbound["latency_seconds"] == exact
    # Percentiles to the millisecond, with no float noise.
    assert all(round(v, 3) == v for v in exact.values())
