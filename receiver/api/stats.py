"""`/api/v1/stats`: delivery outcomes of outbound SMS in a window, and the traffic around them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TypedDict

from starlette.requests import Request
from starlette.responses import Response

from receiver.api.models import Stats, StatsQuery, answer
from receiver.api.params import BadParameter, read_query
from receiver.db.engine import Connection, Record
from receiver.projection.daily_stats import window
from receiver.status import TERMINAL, Status

_MAX_WINDOW = timedelta(days=366)

_FORWARDS = """
SELECT state, count(*) AS n FROM forwards
WHERE created_at >= $1 AND created_at < $2 GROUP BY state
"""


async def stats(request: Request) -> Response:
    """Counts per status, delivery rate, sent-to-delivered percentiles; optionally grouped."""
    q = read_query(StatsQuery, request.query_params)
    until = q.until or datetime.now(UTC)
    since = q.since
    if since is None:
        if until - datetime.min.replace(tzinfo=UTC) < timedelta(days=1):
            raise BadParameter("until", "until leaves no day before it for since")
        since = until - timedelta(days=1)
    if since >= until:
        raise BadParameter("since", "since must be before until")
    if until - since > _MAX_WINDOW:
        raise BadParameter("since", "the window may span at most 366 days")
    group = q.group_by
    async with request.state.reads.acquire() as conn:
        body = await stats_of(conn, since, until, group)
    return answer(Stats, body)


async def stats_of(
    conn: Connection,
    since: datetime,
    until: datetime,
    group: str | None = None,
    *,
    overall: bool = False,
    traffic: bool = True,
) -> dict[str, object]:
    """The figures of `/api/v1/stats` for a window, optionally grouped (the console's too).

    `overall` adds the ungrouped `outbound` summary to a grouped answer, from the same
    rows; `traffic=False` leaves out `deliveries` (the console counts them its own way).
    """
    counted = await window(conn, since, until, group, traffic=traffic)
    forwards = await conn.fetch(_FORWARDS, since, until)
    groups, mo_received = _groups(counted.rows)
    seen = counted.traffic
    body: dict[str, object] = {
        "since": since,
        "until": until,
        "mo_received": mo_received,
        "forwards": {row["state"]: row["n"] for row in forwards},
        "deliveries": None
        if not traffic
        else {
            "received": seen["deliveries"],
            "events": seen["events"],
            "repeated": seen["deliveries"] - seen["events"],
            "retries": seen["retries"],
            "conflicts": seen["conflicts"],
        },
        "anomalies": sum(g["anomalies"] for g in groups),
    }
    if group is None:
        body["outbound"] = groups[0] if groups else _group(None, None, {})
    else:
        body["group_by"] = group
        body["groups"] = groups
        if overall:
            # From the ungrouped rows, as `/api/v1/stats` without group_by answers: by
            # network or user_data the latencies are bucketed.
            ungrouped = await window(conn, since, until, None, traffic=False)
            whole, _ = _groups(ungrouped.rows, grouped=False)
            body["outbound"] = whole[0] if whole else _group(None, None, {})
    return body


_COUNTED = ("total", "terminal", "anomalies", *(status.value for status in Status))
_TERMINAL = {status.value for status in TERMINAL}


class Group(TypedDict):
    """The outcomes of a group's outbound SMS, as `/api/v1/stats` answers them."""

    key: str | None
    total: int
    by_status: dict[str, int]
    delivery_rate: float | None
    latency_seconds: dict[str, float] | None
    anomalies: int


def _groups(rows: Sequence[Record], *, grouped: bool = True) -> tuple[list[Group], int]:
    """Fold outcome rows into a summary of outbound SMS per group (all in one, `grouped`
    False), in key order; and the MOs."""
    totals: dict[str | None, dict[str, int]] = {}
    latencies: dict[str | None, dict[float, int]] = {}
    inbound = 0
    for row in rows:
        n, key = row["n"], row["key"] if grouped else None
        if row["direction"] != "outbound":
            inbound += n
            continue
        counts = totals.setdefault(key, dict.fromkeys(_COUNTED, 0))
        counts["total"] += n
        counts[row["status"]] += n
        if row["status"] in _TERMINAL:
            counts["terminal"] += n
        if row["anomaly"]:
            counts["anomalies"] += n
        if row["latency"] is not None:
            seen = latencies.setdefault(key, {})
            latency = float(row["latency"])
            seen[latency] = seen.get(latency, 0) + n
    keys = sorted(totals, key=lambda k: (k is None, str(k)))
    return [_group(key, totals[key], latencies.get(key, {})) for key in keys], inbound


def _group(key: str | None, counts: dict[str, int] | None, latency: dict[float, int]) -> Group:
    counts = counts or dict.fromkeys(_COUNTED, 0)
    terminal = counts["terminal"]
    return {
        "key": key,
        "total": counts["total"],
        "by_status": {status.value: counts[status.value] for status in Status},
        "delivery_rate": counts["delivered"] / terminal if terminal else None,
        "latency_seconds": (
            {
                name: _percentile(latency, q)
                for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
            }
            if latency
            else None
        ),
        "anomalies": counts["anomalies"],
    }


def _percentile(counts: dict[float, int], fraction: float) -> float:
    """PostgreSQL's percentile_cont over values given with how often each occurs."""
    values = sorted(counts)
    total = sum(counts.values())
    position = fraction * (total - 1)
    lower = math.floor(position)

    def ranked(rank: int) -> float:
        seen = 0
        for value in values:
            seen += counts[value]
            if rank < seen:
                return value
        return values[-1]

    low, high = ranked(lower), ranked(min(lower + 1, total - 1))
    # To the millisecond (CALLR's times are to the second): no float noise in answers.
    return round(low + (high - low) * (position - lower), 3)
