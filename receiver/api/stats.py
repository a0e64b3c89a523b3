"""`/api/v1/stats`: delivery outcomes of outbound SMS in a window, and the traffic around them."""

from __future__ import annotations

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
    key = GROUPS[group] if group else "NULL"
    return f"""
SELECT {key} AS key, count(*) AS total, {_STATUS_COUNTS},
    count(*) FILTER (WHERE m.status_terminal) AS terminal,
    count(*) FILTER (WHERE m.anomaly) AS anomalies,
    percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (
        ORDER BY extract(epoch FROM m.delivered_at - m.sent_at)
    ) FILTER (WHERE m.status = 'delivered' AND m.sent_at IS NOT NULL
                AND m.delivered_at IS NOT NULL) AS latency
FROM messages m
WHERE m.direction = 'outbound' AND m.created_at >= $1 AND m.created_at < $2
GROUP BY 1 ORDER BY 1 NULLS LAST
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
    groups = [_group(row) for row in rows]
    body: dict[str, Any] = {
        "since": since,
        "until": until,
        "outbound": groups[0]
        if group is None and groups
        else _group(None)
        if group is None
        else None,
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
        body["outbound"] = groups[0] if groups else _group(None)
    else:
        body["group_by"] = group
        body["groups"] = groups
    return JSONResponse(body)


def _group(row: Any) -> dict[str, Any]:
    if row is None:
        counts = {status.value: 0 for status in Status}
        return {"key": None, "total": 0, "by_status": counts, "delivery_rate": None,
                "latency_seconds": None, "anomalies": 0}  # fmt: skip
    terminal = row["terminal"]
    latency = row["latency"]
    return {
        "key": row["key"],
        "total": row["total"],
        "by_status": {status.value: row[status.value] for status in Status},
        "delivery_rate": row["delivered"] / terminal if terminal else None,
        "latency_seconds": (
            {"p50": latency[0], "p90": latency[1], "p99": latency[2]} if latency else None
        ),
        "anomalies": row["anomalies"],
    }
