"""Routing to handlers, inside the projector's transaction (the outbox): replies and status news.

Status changes of outbound SMS go to the handler subscribed to status news for the
SMS's own `user_data` (`announce`). Replies are routed as follows.

For each MO, in order, recording which rule matched:
1. `user_data`: the MO's own `user_data`, when not empty, matches a handler;
2. `recent_mt`: otherwise the `user_data` of the most recent outbound SMS sent to
   the MO's sender within the window, preferring one sent from the number the MO
   was sent to, matches a handler;
3. `default`: otherwise the default handler;
4. `unrouted`: otherwise the forward waits for a handler (`route_unrouted`).
Rule 2 gives a reply to no team when another team's SMS from the same sender to the
same number is within the window too (`_RIVAL`): it waits as unrouted, its rule
`ambiguous`, for an admin to read; no handler added later takes it.
An exact `user_data` match wins over a prefix, a longer prefix over a shorter one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import orjson

from receiver.db.arrays import columns
from receiver.db.engine import Connection, one_row
from receiver.reports import Report, StatusChange
from receiver.status import evidence_row

NOTIFY_CHANNEL = "receiver_forwards"


async def wake_dispatchers(conn: Connection) -> None:
    """Tell every dispatcher there is work; PostgreSQL delivers it when the transaction commits."""
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


# Handlers matching a routing key, best first. `$key` stands for the key expression.
_HANDLER_FOR_KEY = """
SELECT h.id FROM handlers h
WHERE h.enabled AND h.replies AND NOT h.is_default AND {key} IS NOT NULL
  AND (h.match = {key} OR (h.prefix AND starts_with({key}, h.match)))
ORDER BY h.prefix, length(h.match) DESC
LIMIT 1
"""

# The handler a reply goes to, and the rule that chose it, in one order for a new
# reply (_ROUTE) and for one routed again when handlers change (_ROUTE_UNROUTED):
# its own user_data's handler, then the recent MT's, then the default one. {r} names
# the row holding own_handler, recent_handler and default_handler; {rival}, the
# ambiguous case's WHEN, where there is one.
_DEFAULT_HANDLER = (
    "SELECT h.id FROM handlers h WHERE h.enabled AND h.replies AND h.is_default LIMIT 1"
)
_HANDLER = "COALESCE({r}.own_handler, {r}.recent_handler, {r}.default_handler)"
_RULE = """CASE WHEN {r}.own_handler IS NOT NULL THEN 'user_data'
             {rival}
             WHEN {r}.recent_handler IS NOT NULL THEN 'recent_mt'
             WHEN {r}.default_handler IS NOT NULL THEN 'default'
             ELSE 'unrouted' END"""

# The latest outbound SMS sent to the MO's sender within the window. The number and
# the window are one range of the (to_number, created_at) index, written as a row
# comparison, and the order asked for is that index's: no other index can serve the
# lookup, so the plan uses this one however few rows the table had when it was made.
# The same-sender variant compares the MT's sender as `(...) IS TRUE`, which no index
# serves: as a plain `=`, the from_number index (the console's searches) was chosen
# too, and it reads every message ever sent from that sender id, for each reply.
_LATEST_MT = """
SELECT m.sms_id, m.user_data, m.from_number FROM messages m
WHERE mo.user_data IS NULL
  AND (m.to_number, m.created_at) BETWEEN (mo.sender, mo.at - $8::interval) AND (mo.sender, mo.at)
  AND m.direction = 'outbound' {same_sender}
ORDER BY m.to_number DESC, m.created_at DESC
LIMIT 1
"""

_SAME_SENDER = "AND (m.from_number = mo.recipient) IS TRUE"

# Another team's SMS to the same number from the same sender within the window: one
# with another user_data, which the recent-SMS rule's handler does not also serve
# (looked for only when that rule decides: the first two conditions). A
# reply then goes to neither team (team A sending to team B's customer from B's sender
# must not take the reply), and waits as `unrouted` with the rule `ambiguous`.
_RIVAL = f"""
SELECT true AS found FROM messages m
WHERE recent.id IS NOT NULL AND k.user_data IS NULL
  AND (m.to_number, m.created_at) BETWEEN (k.sender, k.at - $8::interval) AND (k.sender, k.at)
  AND m.direction = 'outbound'
  AND (m.from_number IS NOT DISTINCT FROM k.mt_from) IS TRUE
  AND m.user_data IS NOT NULL AND (m.user_data <> k.mt_user_data) IS NOT FALSE
  AND ({_HANDLER_FOR_KEY.format(key="m.user_data")}) IS DISTINCT FROM recent.id
LIMIT 1
"""

_ROUTE = f"""
WITH mo AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[], $7::int[])
        AS mo(event_id, sms_id, sender, recipient, user_data, at, ord)
),
keyed AS (
    SELECT mo.*, COALESCE(same.sms_id, any_.sms_id) AS mt_sms_id,
        CASE WHEN same.sms_id IS NOT NULL THEN same.user_data ELSE any_.user_data END
            AS mt_user_data,
        CASE WHEN same.sms_id IS NOT NULL THEN same.from_number ELSE any_.from_number END
            AS mt_from
    FROM mo
    LEFT JOIN LATERAL ({_LATEST_MT.format(same_sender=_SAME_SENDER)}) same ON true
    LEFT JOIN LATERAL ({_LATEST_MT.format(same_sender="")}) any_ ON same.sms_id IS NULL
),
routed AS (
    SELECT k.*,
        own.id AS own_handler, recent.id AS recent_handler, fallback.id AS default_handler,
        COALESCE(rival.found, false) AS rival
    FROM keyed k
    LEFT JOIN LATERAL ({_HANDLER_FOR_KEY.format(key="k.user_data")}) own ON true
    LEFT JOIN LATERAL ({_HANDLER_FOR_KEY.format(key="k.mt_user_data")}) recent ON true
    LEFT JOIN LATERAL ({_RIVAL}) rival ON true
    LEFT JOIN LATERAL ({_DEFAULT_HANDLER}) fallback ON true
),
chosen AS (
    SELECT r.*,
        CASE WHEN r.own_handler IS NULL AND r.rival THEN NULL
             ELSE {_HANDLER.format(r="r")}
        END AS handler_id,
        {_RULE.format(r="r", rival="WHEN r.rival THEN 'ambiguous'")} AS rule
    FROM routed r
),
inserted AS (
INSERT INTO forwards (event_id, sms_id, handler_id, rule, user_data, mt_sms_id, sender,
                      conversation, state, next_attempt_at, created_at)
SELECT c.event_id, c.sms_id, c.handler_id, c.rule,
    COALESCE(c.user_data, c.mt_user_data), c.mt_sms_id, c.sender,
    c.handler_id::text || ':' || COALESCE(c.sender, ''),
    CASE WHEN c.handler_id IS NULL THEN 'unrouted' ELSE 'pending' END,
    now(), now()
FROM chosen c
ORDER BY c.ord
ON CONFLICT (event_id) WHERE kind = 'reply' DO NOTHING
RETURNING state
)
SELECT i.state FROM inserted i
UNION ALL
-- Dispatchers woken in the same round trip when any forward awaits delivery
-- (PostgreSQL sends it on commit). The notify is volatile: the planner keeps it.
SELECT 'notified' FROM (
    SELECT pg_notify($9, '') FROM inserted WHERE state = 'pending' LIMIT 1
) AS notify
"""


async def route(conn: Connection, reports: Sequence[Report], *, window: timedelta) -> int:
    """Write a forward for each newly stored inbound SMS; returns how many await delivery.

    When any does, the same statement wakes the dispatchers, by a NOTIFY that
    PostgreSQL sends on commit.
    """
    inbound = [r for r in reports if r.sms.direction == "inbound" and r.forward]
    if not inbound:
        return 0
    rows = [
        (
            r.event_id,
            r.sms.sms_id,
            r.sms.from_number,
            r.sms.to_number,
            r.sms.user_data,
            r.sms.created_at or r.status_at,
            ord_,
        )
        for ord_, r in enumerate(inbound)
    ]
    records = await conn.fetch(_ROUTE, *columns(rows, 7), window, NOTIFY_CHANNEL)
    return sum(1 for record in records if record["state"] == "pending")


# Unrouted forwards, oldest first, take the handler the same rules give them now.
_ROUTE_UNROUTED = f"""
WITH candidates AS (
    SELECT f.id, f.user_data, f.sender, m.user_data AS own_user_data
    FROM forwards f JOIN messages m ON m.sms_id = f.sms_id
    WHERE f.state = 'unrouted' AND f.kind = 'reply' AND f.rule <> 'ambiguous'
    ORDER BY f.id
    FOR UPDATE OF f
),
routed AS (
    SELECT c.id, own.id AS own_handler, recent.id AS recent_handler,
           fallback.id AS default_handler
    FROM candidates c
    LEFT JOIN LATERAL ({_HANDLER_FOR_KEY.format(key="c.own_user_data")}) own ON true
    LEFT JOIN LATERAL ({_HANDLER_FOR_KEY.format(key="c.user_data")}) recent ON true
    LEFT JOIN LATERAL ({_DEFAULT_HANDLER}) fallback ON true
)
UPDATE forwards f SET
    handler_id = {_HANDLER.format(r="r")},
    rule = {_RULE.format(r="r", rival="")},
    conversation = ({_HANDLER.format(r="r")})::text || ':' || COALESCE(f.sender, ''),
    state = 'pending',
    next_attempt_at = now()
FROM routed r
WHERE f.id = r.id AND {_HANDLER.format(r="r")} IS NOT NULL
RETURNING f.id
"""


async def route_unrouted(conn: Connection) -> int:
    """Route the forwards that had no handler, with the handlers there are now."""
    async with conn.transaction():
        records = await conn.fetch(_ROUTE_UNROUTED)
        if records:
            await wake_dispatchers(conn)
    return len(records)


# A status change goes to the best handler subscribed to status news for the SMS's own
# user_data (exact, then the longest prefix; the default handler only when it
# subscribed too), unless that handler was already told of this status or a later
# one, by the order of the evidence (terminal, time, rank, then the status's name, as
# the record's current status is chosen: `delivered` and `failed` stamped in the same
# second end on the same one whatever their order, and a handler told the first is
# told the second): a callback never goes backwards and is never sent twice (the
# partial unique index is the last word when two projections race).
# The status a handler was told of, and the news, in the evidence order.
# The handler for a status change of an SMS with `{user_data}`, to a status `{terminal}`
# or not: the choice above, in one place for the projector and the console.
_STATUS_HANDLER = """
SELECT h.id, h.is_default FROM handlers h
WHERE h.enabled AND h.statuses AND ({terminal} OR NOT h.terminal_only)
  AND (h.is_default OR ({user_data} IS NOT NULL
       AND (h.match = {user_data} OR (h.prefix AND starts_with({user_data}, h.match)))))
ORDER BY h.is_default, h.prefix, length(h.match) DESC
LIMIT 1
"""
_STATUS_HANDLER_FOR = (
    "SELECT id FROM ("
    + _STATUS_HANDLER.format(terminal="$2::boolean", user_data="$1::text")
    + ") h"
)
_TOLD = evidence_row("f.status_terminal", "f.status_at", "f.status_rank", "f.status_after")
_NEWS = evidence_row("r.terminal", "r.at", "r.rank", "r.after")
_ANNOUNCE = f"""
WITH c AS (
    SELECT * FROM json_to_recordset($1::json)
        AS c(sms_id text, before text, after text, at timestamptz, rank int, terminal boolean,
             event_id text, ord int)
    -- Nothing to look up while no handler listens for status news (the usual case).
    WHERE EXISTS (SELECT 1 FROM handlers h WHERE h.statuses AND h.enabled)
),
routed AS (
    SELECT c.*, m.user_data, h.id AS handler_id, h.is_default
    FROM c
    -- By key, in a lateral subquery: a plan kept from when the table was small must
    -- not read the whole of an index of `messages` for each batch.
    CROSS JOIN LATERAL (
        SELECT m.user_data FROM messages m WHERE m.sms_id = c.sms_id LIMIT 1
    ) m
    CROSS JOIN LATERAL (
        {_STATUS_HANDLER.format(terminal="c.terminal", user_data="m.user_data")}
    ) h
),
inserted AS (
INSERT INTO forwards (kind, event_id, sms_id, handler_id, rule, user_data, conversation, state,
                      next_attempt_at, created_at, status_before, status_after, status_at,
                      status_rank, status_terminal)
SELECT 'status', r.event_id, r.sms_id, r.handler_id,
    CASE WHEN r.is_default THEN 'default' ELSE 'user_data' END, r.user_data,
    r.handler_id::text || ':sms:' || r.sms_id, 'pending', now(), now(),
    r.before, r.after, r.at, r.rank, r.terminal
FROM routed r
LEFT JOIN LATERAL (
    SELECT true AS told FROM forwards f
    WHERE f.kind = 'status' AND f.handler_id = r.handler_id AND f.sms_id = r.sms_id
      AND {_TOLD} >= {_NEWS}
    LIMIT 1
) AS already ON true
WHERE already.told IS NULL
ORDER BY r.ord
ON CONFLICT DO NOTHING
RETURNING 1
)
SELECT count(*) AS n, (SELECT count(*) FROM (
    SELECT pg_notify($2, '') FROM inserted LIMIT 1) AS notify) AS notified
FROM inserted
"""


async def status_handler_for(
    conn: Connection, user_data: str | None, *, terminal: bool
) -> int | None:
    """The id of the handler a status change of an SMS with `user_data` (to a terminal
    status, or not) goes to now; None when no handler would hear of it."""
    found = await conn.fetchval(_STATUS_HANDLER_FOR, user_data, terminal)
    return None if found is None else int(found)


async def announce(conn: Connection, changes: Sequence[StatusChange]) -> int:
    """Write a status callback for each change a subscribed handler is to hear of; how many.

    When any, the same statement wakes the dispatchers (NOTIFY, sent on commit).
    """
    if not changes:
        return 0
    rows = [
        {
            "sms_id": c.sms_id,
            "before": c.before,
            "after": c.after,
            "at": c.at,
            "rank": c.rank,
            "terminal": c.terminal,
            "event_id": c.event_id,
            "ord": ord_,
        }
        for ord_, c in enumerate(changes)
    ]
    record = await one_row(conn, _ANNOUNCE, orjson.dumps(rows).decode(), NOTIFY_CHANNEL)
    return int(record["n"])
