"""Events to message records: the current state per SMS, its history and the evidence behind it.

Runs inside the projector's transaction (or a replay's), as a handful of set-based
statements per batch, whatever its size.

The result depends only on the set of events seen, never on their order:
- reported history steps are a union (one row per step, however many events repeat it);
- each snapshot's status and time is an observation, also a union;
- the current status is the greatest point of evidence under one total order,
  (terminal, time, lifecycle rank, name), so a late, older report changes nothing
  and nothing moves out of a terminal status;
- derived steps are recomputed from all the evidence of the SMS;
- descriptive fields take the greatest non-empty value, times the earliest.
The message row is written first: its lock makes concurrent batches that touch
one SMS take turns, so each sees the other's evidence.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from receiver.db.engine import Connection
from receiver.reports import Report, StatusChange
from receiver.status import RANK, TERMINAL, Status, evidence_key, evidence_terms

# Fields every snapshot repeats; they do not change over an SMS's life, so the
# greatest non-empty value is the value whatever the order.
_GREATEST = (
    "direction",
    "from_number",
    "to_number",
    "text",
    "user_data",
    "encoding",
    "parts",
    "cost",
    "cost_cents",
    "network",
    "nature",
    "error",
)
_LEAST = ("created_at", "sent_at", "delivered_at")
_STATUS = ("status", "provider_status", "status_at", "status_rank", "status_terminal")
_SNAPSHOT_TYPES = {
    "parts": "int",
    "cost": "numeric",
    "cost_cents": "numeric",
    "created_at": "timestamptz",
    "sent_at": "timestamptz",
    "delivered_at": "timestamptz",
    "status_at": "timestamptz",
    "status_rank": "smallint",
    "status_terminal": "boolean",
    "first_seen_at": "timestamptz",
    "last_seen_at": "timestamptz",
    "anomaly": "boolean",
    "unexplained": "boolean",
}
_SNAPSHOT_COLUMNS = (
    "sms_id",
    *_GREATEST,
    *_LEAST,
    *_STATUS,
    "first_seen_at",
    "last_seen_at",
    "anomaly",
    "unexplained",
)


def _terms(row: str) -> list[str]:
    """The evidence order of a record's status, its provider's word last."""
    return evidence_terms(*(f"{row}.{c}" for c in _ORDERED))


# The status columns in the evidence order's sequence.
_ORDERED = ("status_terminal", "status_at", "status_rank", "status", "provider_status")


# The reported steps and the observations ride in the upsert's statement: they
# touch other tables and read nothing the upsert writes, nor it theirs, so one
# round trip does for all. A derived step that a report now shows becomes a
# reported one.
_EVIDENCE_CTES = """
reported AS (
INSERT INTO transitions AS t (sms_id, before, after, at, derived, event_id)
SELECT DISTINCT ON (h.sms_id, h.before, h.after, h.at)
    h.sms_id, h.before, h.after, h.at, false, h.event_id
FROM json_to_recordset($3::json)
    AS h(sms_id text, before text, after text, at timestamptz, event_id text, ord int)
ORDER BY h.sms_id, h.before, h.after, h.at, h.ord
ON CONFLICT (sms_id, before, after, at)
    DO UPDATE SET derived = false, event_id = EXCLUDED.event_id WHERE t.derived
),
observed AS (
INSERT INTO observations (sms_id, status, at, event_id)
SELECT DISTINCT ON (o.sms_id, o.status, o.at) o.sms_id, o.status, o.at, o.event_id
FROM json_to_recordset($4::json)
    AS o(sms_id text, status text, at timestamptz, event_id text, ord int)
ORDER BY o.sms_id, o.status, o.at, o.ord
ON CONFLICT DO NOTHING
)"""


# The statements below are assembled once, at import, from the constant column lists
# and status tables of this module; no input ever reaches their text.
def _upsert_messages_sql() -> str:
    record = ", ".join(f"{c} {_SNAPSHOT_TYPES.get(c, 'text')}" for c in _SNAPSHOT_COLUMNS)
    aggregates = ", ".join(
        [f"max(s.{c}) AS {c}" for c in _GREATEST]
        + [f"min(s.{c}) AS {c}" for c in _LEAST]
        + [
            "min(s.first_seen_at) AS first_seen_at",
            "max(s.last_seen_at) AS last_seen_at",
            "bool_or(s.anomaly)"
            " OR count(DISTINCT s.status) FILTER (WHERE s.status_terminal) > 1 AS anomaly",
            "bool_or(s.unexplained) AS unexplained",
        ]
    )
    status_columns = ", ".join(f"s.{c}" for c in _STATUS)
    top_order = ", ".join(["s.sms_id", *(f"{term} DESC" for term in _terms("s"))])
    # `unexplained` is set for a new message only: its evidence is all in this batch.
    # An existing message keeps its flag, which the derive statement recomputes.
    columns = (
        *_GREATEST,
        *_LEAST,
        *_STATUS,
        "first_seen_at",
        "last_seen_at",
        "anomaly",
        "unexplained",
    )
    newer = f"({', '.join(_terms('EXCLUDED'))}) > ({', '.join(_terms('m'))})"
    updates = ", ".join(
        [f"{c} = GREATEST(m.{c}, EXCLUDED.{c})" for c in _GREATEST]
        + [f"{c} = LEAST(m.{c}, EXCLUDED.{c})" for c in _LEAST]
        + [f"{c} = CASE WHEN {newer} THEN EXCLUDED.{c} ELSE m.{c} END" for c in _STATUS]
        + [
            "first_seen_at = LEAST(m.first_seen_at, EXCLUDED.first_seen_at)",
            "last_seen_at = GREATEST(m.last_seen_at, EXCLUDED.last_seen_at)",
            "anomaly = m.anomaly OR EXCLUDED.anomaly OR (m.status_terminal"
            " AND EXCLUDED.status_terminal AND EXCLUDED.status <> m.status)",
        ]
    )
    # The daily statistics are told, in this statement, of every day whose figures may
    # change with the messages: each message's creation day before
    # (`before` reads the rows as they were: a message whose creation time moves
    # leaves a day as well as joining another) and after.
    return f"""
WITH s AS (SELECT * FROM json_to_recordset($1::json) AS s({record})),
top AS (SELECT DISTINCT ON (s.sms_id) s.sms_id, {status_columns} FROM s ORDER BY {top_order}),
agg AS (SELECT s.sms_id, {aggregates} FROM s GROUP BY s.sms_id),
before AS (
    SELECT b.sms_id, b.created_at, b.status::text AS status, b.user_data
    FROM messages b WHERE b.sms_id = ANY($2::text[])
),
up AS (
INSERT INTO messages AS m (sms_id, {", ".join(columns)})
SELECT agg.sms_id, {", ".join(("top." if c in _STATUS else "agg.") + c for c in columns)}
FROM agg JOIN top USING (sms_id)
ORDER BY agg.sms_id
ON CONFLICT (sms_id) DO UPDATE SET {updates}
RETURNING m.sms_id, m.unexplained, m.created_at, m.status_at, m.status::text AS status,
    m.status_rank, m.status_terminal, m.direction, m.user_data
),
marked AS (
INSERT INTO stats_changes (day)
SELECT DISTINCT d.day FROM (
    SELECT {_UTC_DAY.format("up.created_at")} FROM up
    UNION ALL SELECT {_UTC_DAY.format("before.created_at")} FROM before
) AS d(day)
WHERE d.day IS NOT NULL
ORDER BY d.day
),
{_EVIDENCE_CTES}
SELECT up.sms_id, up.unexplained, up.status_at, up.status, up.status_rank, up.status_terminal,
    up.direction, b.status AS was,
    b.sms_id IS NOT NULL AND COALESCE(b.user_data, '') = ''
        AND COALESCE(up.user_data, '') <> '' AS routable_now
FROM up LEFT JOIN before b USING (sms_id)
"""


_UTC_DAY = "({} AT TIME ZONE 'UTC')::date"


_UPSERT_MESSAGES = _upsert_messages_sql()


def _rank_sql(column: str) -> str:
    cases = " ".join(f"WHEN '{status.value}' THEN {rank}" for status, rank in RANK.items())
    return f"CASE {column} {cases} ELSE 0 END"


def _terminal_sql(column: str) -> str:
    return f"{column} IN ({', '.join(repr(status.value) for status in sorted(TERMINAL))})"


# An observed status that no reported step leads to ("explained") gets a derived
# step from the status just before it in evidence order. Everything is read per
# touched SMS, so the cost follows the batch, not the size of the tables.
#
# One statement: the steps wanted now; derived steps no longer wanted deleted, the
# others inserted or given their event (the two touch different keys); and the
# messages' flag, which reads only reported steps and observations, written only
# where it changes (a message row rewritten means all its indexes written again).
# The flag is read off the evidence points `p` has already gathered (an observed
# point that no reported step explains): no second look at either table. (Written
# as a correlated EXISTS, the planner once hashed it over the whole of both tables.)
_DERIVE = f"""
WITH p AS (
    SELECT pts.*,
        lag(pts.status) OVER (
            PARTITION BY pts.sms_id
            ORDER BY {_terminal_sql("pts.status")}, pts.at, {_rank_sql("pts.status")},
                     pts.status COLLATE "C", pts.observed
        ) AS previous,
        bool_or(NOT pts.observed) OVER (PARTITION BY pts.sms_id, pts.status) AS explained
    FROM (
        SELECT o.sms_id, o.status::text AS status, o.at, o.event_id, true AS observed
        FROM observations o WHERE o.sms_id = ANY($1::text[])
        UNION ALL
        SELECT t.sms_id, t.after::text, t.at, t.event_id, false
        FROM transitions t WHERE NOT t.derived AND t.sms_id = ANY($1::text[])
    ) pts
),
wanted AS (
    SELECT p.sms_id, p.previous AS before, p.status AS after, p.at, p.event_id FROM p
    WHERE p.observed AND NOT p.explained AND p.previous IS NOT NULL AND p.previous <> p.status
),
forgotten AS (
    DELETE FROM transitions t
    WHERE t.derived AND t.sms_id = ANY($1::text[]) AND NOT EXISTS (
        SELECT 1 FROM wanted w
        WHERE w.sms_id = t.sms_id AND w.before = t.before::text AND w.after = t.after::text
            AND w.at = t.at
    )
),
derived AS (
    INSERT INTO transitions AS t (sms_id, before, after, at, derived, event_id)
    SELECT w.sms_id, w.before, w.after, w.at, true, w.event_id FROM wanted w
    ORDER BY w.sms_id
    ON CONFLICT (sms_id, before, after, at) DO UPDATE SET event_id = EXCLUDED.event_id
        WHERE t.derived AND t.event_id IS DISTINCT FROM EXCLUDED.event_id
)
UPDATE messages m SET unexplained = f.unexplained
FROM (
    SELECT p.sms_id, bool_or(p.observed AND NOT p.explained) AS unexplained
    FROM p GROUP BY p.sms_id
) f
WHERE m.sms_id = ANY($1::text[]) AND m.sms_id = f.sms_id AND m.unexplained <> f.unexplained
"""


async def project(conn: Connection, reports: Sequence[Report]) -> Applied:
    """Apply stored events to the message records, inside the caller's transaction.

    The daily statistics are told of every creation day of a message that changes
    (the days events were received are marked by the transaction that stores them).
    Returns how many reports were older than their message's status once applied
    (the ones that arrived out of order), and the outbound SMS whose current status
    changed, for their status callbacks.
    """
    if not reports:
        return Applied(late=0, changes=[])
    # The ids again as an array: the planner sees how many there are, and looks them
    # up in the index (with only the JSON, it chose to scan the whole table while it
    # was small, and kept to that as it grew).
    ids = sorted({r.sms.sms_id for r in reports})
    unexplained_here = _unexplained_in(reports)
    history = [
        {
            "sms_id": r.sms.sms_id,
            "before": step.before.value,
            "after": step.after.value,
            "at": step.at,
            "event_id": r.event_id,
            "ord": ord_,
        }
        for ord_, r in enumerate(reports)
        for step in r.sms.history
    ]
    observations = [
        {
            "sms_id": r.sms.sms_id,
            "status": r.sms.status.value,
            "at": r.status_at,
            "event_id": r.event_id,
            "ord": ord_,
        }
        for ord_, r in enumerate(reports)
    ]
    upserted = await conn.fetch(
        _UPSERT_MESSAGES,
        _snapshots_json(reports, unexplained_here),
        ids,
        orjson.dumps(history).decode(),
        orjson.dumps(observations).decode(),
    )
    status_at = {row["sms_id"]: row["status_at"] for row in upserted}
    late = sum(r.status_at < status_at[r.sms.sms_id] for r in reports)
    # Derived steps can only change for an SMS with an observation that no reported
    # step explains: one already stored (the flag), or one this batch brings (a
    # status that none of the batch's histories for the SMS shows). Batches with
    # none skip the statement that reads the SMS's whole evidence.
    unexplained = {row["sms_id"] for row in upserted if row["unexplained"]} | unexplained_here
    if unexplained:
        await conn.execute(_DERIVE, sorted(unexplained))
    return Applied(late=late, changes=_changes(upserted, reports))


@dataclass(frozen=True, slots=True)
class Applied:
    """What `project` did: reports older than their message's status, and status changes;
    and, from `apply`, the events parked because they could not be applied."""

    late: int
    changes: list[StatusChange]
    parked: list[str] = field(default_factory=list)

    def plus(self, other: Applied) -> Applied:
        """What two applications in turn did."""
        return Applied(
            late=self.late + other.late,
            changes=self.changes + other.changes,
            parked=self.parked + other.parked,
        )


def _changes(upserted: Sequence[Any], reports: Sequence[Report]) -> list[StatusChange]:
    latest: dict[str, Report] = {}
    for report in reports:
        best = latest.get(report.sms.sms_id)
        if best is None or evidence_key(report.sms.status, report.status_at) >= evidence_key(
            best.sms.status, best.status_at
        ):
            latest[report.sms.sms_id] = report
    # A change of status; or the status as it is, once the SMS's user_data is known (a
    # report that came before the send's answer found no handler to tell: the send's
    # step names it now). The announce statement never tells a handler twice.
    return [
        StatusChange(
            sms_id=row["sms_id"],
            before=row["was"] if row["status"] != row["was"] else None,
            after=row["status"],
            at=row["status_at"],
            rank=row["status_rank"],
            terminal=row["status_terminal"],
            event_id=latest[row["sms_id"]].event_id,
        )
        for row in upserted
        if row["direction"] == "outbound" and (row["status"] != row["was"] or row["routable_now"])
    ]


def _unexplained_in(reports: Sequence[Report]) -> set[str]:
    """The SMS with a status in `reports` that none of their histories for it shows."""
    observed: dict[str, set[Status]] = {}
    reached: dict[str, set[Status]] = {}
    for report in reports:
        observed.setdefault(report.sms.sms_id, set()).add(report.sms.status)
        reached.setdefault(report.sms.sms_id, set()).update(s.after for s in report.sms.history)
    return {sms_id for sms_id, statuses in observed.items() if not statuses <= reached[sms_id]}


def _snapshots_json(reports: Sequence[Report], unexplained: set[str]) -> str:
    """The reports as one JSON array of records, the upsert's only row parameter.

    asyncpg encodes an array parameter element by element in Python, which cost more
    than everything else the projection does in Python (15 us a report for the 23
    columns, against 4 us for this; PostgreSQL reads the JSON in C). `unexplained`:
    the SMS whose message, if this batch creates it, starts with its flag set.

    Reading JSON is most of the upsert's cost, so an SMS's reports are merged here
    first, to one record when they agree (a rebuild's page holds all the reports of
    most of its SMS). The upsert's aggregates give the same result on the merged
    records: whatever is decided by comparing values that Python orders as
    PostgreSQL does (times, numbers, the status order with its "C" collation) is
    decided here for the SMS and copied to each of its records; text, which the
    database orders by its own collation, is only merged where one record has a
    value and the other none, or both the same.
    """
    merged: dict[str, list[dict[str, Any]]] = {}
    for report in reports:
        row = _snapshot_row(report)
        rows = merged.setdefault(report.sms.sms_id, [])
        if not rows:
            rows.append(row)
        else:
            _merge(rows, row)
    out = []
    for sms_id, rows in merged.items():
        if len(rows) > 1:
            _settle(rows)
        for row in rows:
            del row["terminals"]
            row["unexplained"] = sms_id in unexplained
            out.append(row)
    return orjson.dumps(out).decode()


def _snapshot_row(report: Report) -> dict[str, Any]:
    sms = report.sms
    status, at = sms.status, report.status_at
    terminals = {status} & TERMINAL
    for step in sms.history:
        if evidence_key(step.after, step.at) > evidence_key(status, at):
            status, at = step.after, step.at
        if step.after in TERMINAL:
            terminals.add(step.after)
    row = sms._asdict()  # the fields not sent (history) or replaced below are dropped
    del row["history"]
    row["cost"] = None if sms.cost is None else str(sms.cost)
    row["cost_cents"] = None if sms.cost_cents is None else str(sms.cost_cents)
    row["status"] = status.value
    row["provider_status"] = sms.provider_status if status is sms.status else status.value
    row["status_at"] = at
    row["status_rank"] = RANK[status]
    row["status_terminal"] = status in TERMINAL
    row["first_seen_at"] = row["last_seen_at"] = report.received_at
    row["anomaly"] = len(terminals) > 1
    # The terminal statuses seen, for the anomaly of the merged record.
    row["terminals"] = terminals
    return row


def _merge(rows: list[dict[str, Any]], new: dict[str, Any]) -> None:
    """Fold `new` into the SMS's records: into one whose fields it agrees with, or beside them."""
    for row in rows:
        if _described(row) == _described(new):  # nearly always: one C-level comparison
            _fold(row, new)
            return
        if all(row[c] is None or new[c] is None or row[c] == new[c] for c in _GREATEST):
            for c in _GREATEST:
                if row[c] is None:
                    row[c] = new[c]
            _fold(row, new)
            return
    rows.append(new)


_described = operator.itemgetter(*_GREATEST)


def _fold(row: dict[str, Any], new: dict[str, Any]) -> None:
    """`row` becomes what the upsert's aggregates make of `row` and `new` (all but text)."""
    for c in _LEAST:
        if row[c] is None or (new[c] is not None and new[c] < row[c]):
            row[c] = new[c]
    if _status_key(new) > _status_key(row):
        for c in _STATUS:
            row[c] = new[c]
    row["first_seen_at"] = min(row["first_seen_at"], new["first_seen_at"])
    row["last_seen_at"] = max(row["last_seen_at"], new["last_seen_at"])
    row["terminals"] = row["terminals"] | new["terminals"]
    row["anomaly"] = row["anomaly"] or new["anomaly"] or len(row["terminals"]) > 1


def _settle(rows: list[dict[str, Any]]) -> None:
    """Records of one SMS that could not be merged: each gets the SMS's times and status."""
    whole = dict(rows[0])
    for row in rows[1:]:
        _fold(whole, row)
    for row in rows:
        for c in (*_LEAST, *_STATUS, "first_seen_at", "last_seen_at", "anomaly"):
            row[c] = whole[c]


def _status_key(row: dict[str, Any]) -> tuple[object, ...]:
    """The upsert's order of a record's status evidence (`_terms` in SQL)."""
    return evidence_key(Status(row["status"]), row["status_at"], row["provider_status"])
