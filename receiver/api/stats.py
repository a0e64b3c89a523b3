"""`/api/v1/stats`: delivery outcomes of outbound SMS in a window, and the traffic around them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from receiver.api.params import BadParameter, Params
from receiver.callr.sms import Status
from receiver.http import JSONResponse

GROUPS = {
    "network": "m.network",
    "user_data": "m.user_data",
    "hour": "date_trunc('hour', m.created_at)",
    "day": "date_trunc('day', m.created_at)",
}
_MAX_WINDOW = timedelta(days=366)

_STATUS_COUNTS = ", ".join(
    f"count(*) FILTER (WHERE m.status = '{status.value}') AS \"{status.value}\""
    for status in Status
)


def _outbound_sql(group: str | None) -> str:
    # One row per group and delivery time. CALLR's times are to the second, so the
    # distinct delivery times are few: their counts give exact percentiles (see
    # `_percentile`), and grouping runs in parallel where an ordered-set aggregate
    # over millions of rows would sort them on one core.
    key = GROUPS[group] if group else "NULL"
    return f"""
SELECT {key} AS key,
    CASE WHEN m.status = 'delivered' THEN extract(epoch FROM m.delivered_at - m.sent_at) END
        AS latency,
    count(*) AS total, {_STATUS_COUNTS},
    count(*) FILTER (WHERE m.status_terminal) AS terminal,
    count(*) FILTER (WHERE m.anomaly) AS anomalies
FROM messages m
WHERE m.direction = 'outbound' AND m.created_at >= $1 AND m.created_at < $2
GROUP BY 1, 2
"""


_OUTBOUND = {group: _outbound_sql(group) for group in (None, *GROUPS)}

_AROUND = """
SELECT
    (SELECT count(*) FROM messages
     WHERE direction = 'inbound' AND created_at >= $1 AND created_at < $2) AS mo_received,
    (SELECT count(*) FROM events WHERE received_at >= $1 AND received_at < $2) AS events,
    (SELECT count(*) FROM deliveries WHERE received_at >= $1 AND received_at < $2) AS deliveries,
    (SELECT count(*) FROM deliveries
     WHERE received_at >= $1 AND received_at < $2 AND attempt > 0) AS retries,
    (SELECT count(*) FROM deliveries
     WHERE received_at >= $1 AND received_at < $2 AND conflict) AS conflicts
"""

_FORWARDS = """
SELECT state, count(*) AS n FROM forwards
WHERE created_at >= $1 AND created_at < $2 GROUP BY state
"""


async def stats(request: Request) -> Response:
    """Counts per status, delivery rate, sent-to-delivered percentiles; optionally grouped."""
    p = Params(request.query_params, allowed={"since", "until", "group_by"})
    until = p.time("until") or datetime.now(UTC)
    since = p.time("since") or until - timedelta(days=1)
    if since >= until:
        raise BadParameter("since", "since must be before until")
    if until - since > _MAX_WINDOW:
        raise BadParameter("since", "the window may span at most 366 days")
    group = p.choice("group_by", list(GROUPS))
    async with request.state.api_pool.acquire() as conn:
        rows = await conn.fetch(_OUTBOUND[group], since, until)
        around = await conn.fetchrow(_AROUND, since, until)
        forwards = await conn.fetch(_FORWARDS, since, until)
    groups = _groups(rows)
    body: dict[str, Any] = {
        "since": since,
        "until": until,
        "mo_received": around["mo_received"],
        "forwards": {row["state"]: row["n"] for row in forwards},
        "deliveries": {
            "received": around["deliveries"],
            "events": around["events"],
            "repeated": around["deliveries"] - around["events"],
            "retries": around["retries"],
            "conflicts": around["conflicts"],
        },
        "anomalies": sum(g["anomalies"] for g in groups),
    }
    if group is None:
        body["outbound"] = groups[0] if groups else _group(None, None, {})
    else:
        body["group_by"] = group
        body["groups"] = groups
    return JSONResponse(body)


_COUNTED = ("total", "terminal", "anomalies", *(status.value for status in Status))


def _groups(rows: Any) -> list[dict[str, Any]]:
    """Fold the (group, delivery time) rows into one summary per group, in key order."""
    totals: dict[Any, dict[str, int]] = {}
    latencies: dict[Any, dict[float, int]] = {}
    for row in rows:
        counts = totals.setdefault(row["key"], dict.fromkeys(_COUNTED, 0))
        for name in _COUNTED:
            counts[name] += row[name]
        if row["latency"] is not None:
            seen = latencies.setdefault(row["key"], {})
            seen[float(row["latency"])] = seen.get(float(row["latency"]), 0) + row["delivered"]
    keys = sorted(totals, key=lambda k: (k is None, str(k)))
    return [_group(key, totals[key], latencies.get(key, {})) for key in keys]


def _group(key: Any, counts: dict[str, int] | None, latency: dict[float, int]) -> dict[str, Any]:
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
    return low + (high - low) * (position - lower)
