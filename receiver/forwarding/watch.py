"""What on-call must hear of before a team does: handlers failing or disabled, and CALLR gone
silent while the receiver sends.

Read by `GET /api/v1/status`, `/metrics` and the console's overview, from the database,
so every process says the same.

- A handler is **failing** from its first failure after a success (`failing_since`,
  kept by the dispatcher) to its next success; **disabled** by an admin, by a 410 or
  by RECEIVER_HANDLER_DISABLE_AFTER, with its reason. Each comes with the forwards
  waiting for it.
- CALLR is **silent** when an SMS it accepted from the receiver is older than
  RECEIVER_WEBHOOKS_SILENT_AFTER and no delivery report (`sms.mt.status_update`,
  `v2.sms.outbound.updated`) has come since it was asked for: the subscription was
  removed, its URL changed, a proxy refuses CALLR. Without sends, nothing is said.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from receiver.db.engine import Connection, Record, one_row

_HANDLERS = """
SELECT h.id, h.name,
    CASE WHEN h.is_default THEN NULL
         ELSE h.match || CASE WHEN h.prefix THEN '*' ELSE '' END END AS user_data,
    h.is_default AS "default", h.enabled, h.failing_since, h.disabled_reason, h.disabled_at,
    (SELECT count(*) FROM forwards f
     WHERE f.handler_id = h.id AND f.state IN ('pending', 'in_flight')) AS waiting
FROM handlers h
WHERE NOT h.enabled OR h.failing_since IS NOT NULL
ORDER BY h.id
"""
# The last delivery report's arrival: each type's newest, from (type, received_at).
_LAST_REPORT = """
SELECT max(received_at) FROM (
    (SELECT received_at FROM events WHERE type = 'sms.mt.status_update'
     ORDER BY received_at DESC LIMIT 1)
    UNION ALL
    (SELECT received_at FROM events WHERE type = 'v2.sms.outbound.updated'
     ORDER BY received_at DESC LIMIT 1)
) AS r
"""
# The sends CALLR accepted that were asked for after it: from requested_at's index.
_ACCEPTED_SINCE = """
SELECT count(*) AS n, min(decided_at) AS oldest FROM sends
WHERE requested_at > $1 AND state = 'accepted'
"""


@dataclass(frozen=True, slots=True)
class Silence:
    silent: bool
    since: datetime | None
    """When the oldest SMS CALLR accepted with no report since was accepted."""
    last_report_at: datetime | None
    unreported: int
    """SMS accepted since the last report."""


async def troubled_handlers(conn: Connection) -> list[Record]:
    """The handlers failing or disabled, with the forwards waiting for each."""
    return await conn.fetch(_HANDLERS)


async def silence(
    conn: Connection, silent_after: timedelta, now: datetime | None = None
) -> Silence:
    now = now or datetime.now(UTC)
    last = await conn.fetchval(_LAST_REPORT)
    row = await one_row(conn, _ACCEPTED_SINCE, last or datetime.min.replace(tzinfo=UTC))
    oldest = row["oldest"]
    silent = oldest is not None and oldest <= now - silent_after
    return Silence(silent, oldest if silent else None, last, row["n"])
