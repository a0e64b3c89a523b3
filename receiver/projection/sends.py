"""The steps of sends to their records in `sends` (receiver.callr.sends says what each means).

A request makes the row; every later step applies only over an older one (its
`seq` is greater than the row's), so the record is the same whatever order the
events are read in, and reading one again changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from receiver.callr.sends import SendStep, Step
from receiver.db.engine import Connection

_REQUESTED = """
INSERT INTO sends (
    id, idempotency_key, request_digest, api, to_number, from_number, text, user_data,
    nature, encoding, forced_encoding, parts, state, seq, requested_at, updated_at, next_at,
    key_owner
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'queued', $13, $14, $14, $14, $15)
ON CONFLICT (id) DO NOTHING
"""

# A later step over an earlier one. The row of a request not yet seen (a rebuild
# reads a send's steps in stored order, so this is for events lost or pruned) is
# left alone: a step says nothing of what was asked.
_STEP = """
UPDATE sends SET
    seq = $2,
    state = $3,
    attempts = GREATEST(attempts, COALESCE($4, 0)),
    attempted_at = CASE WHEN $5 = 'attempt' THEN $6 ELSE attempted_at END,
    sms_id = COALESCE($7, sms_id),
    error = CASE WHEN $3 = 'rejected' THEN $8
                 WHEN $3 = 'accepted' THEN NULL
                 ELSE COALESCE($8, error) END,
    decided_at = CASE WHEN $3 IN ('accepted', 'rejected', 'unknown') THEN $6 ELSE NULL END,
    updated_at = $6,
    next_at = CASE WHEN $3 IN ('queued', 'submitted') THEN COALESCE($9, $6) ELSE NULL END,
    reason = $10
WHERE id = $1 AND seq < $2
"""


async def apply_steps(conn: Connection, steps: Sequence[SendStep]) -> None:
    """Apply the steps of sends, in the caller's transaction (the one way in's)."""
    for step in steps:
        if step.step is Step.REQUESTED:
            await conn.execute(_REQUESTED, *_request_row(step))
            continue
        await conn.execute(
            _STEP,
            step.send_id,
            step.seq,
            step.state.value,
            step.attempt,
            step.step.value,
            step.at,
            step.sms_id.lower() if step.sms_id else None,
            step.error,
            step.next_at,
            step.document.get("reason"),
        )


def _request_row(step: SendStep) -> tuple[object, ...]:
    d = step.document
    return (
        step.send_id,
        d.get("idempotency_key"),
        d["request_digest"],
        d["api"],
        d["to"],
        d.get("from"),
        d["text"],
        d.get("user_data"),
        d.get("nature"),
        d["encoding"],
        d.get("forced_encoding"),
        d["parts"],
        step.seq,
        step.at,
        d.get("key_owner"),
    )
