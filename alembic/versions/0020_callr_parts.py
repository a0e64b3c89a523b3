"""CALLR's parts and encoding win: a send's estimate leaves the message records

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 12:00:00.000000

An accepted send used to write the receiver's estimate of its parts and encoding
into the SMS's message record, and the records keep the greatest value reported:
CALLR's report could raise the estimate, never lower it (3 parts estimated stayed 3
after CALLR billed 1). The estimate is now the send's alone (`sends.parts`,
`sends.encoding`). Here the records of the SMS that sends hold lose the estimate
and their events are queued again: the projector rebuilds parts and encoding from
what CALLR reported (its webhooks, reconcile, backfill), and the accepted steps,
read with today's rules, no longer carry the estimate.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it changes data only.
backward_compatible = True


def upgrade() -> None:
    op.execute(
        """
        UPDATE messages m SET parts = NULL, encoding = NULL
        WHERE EXISTS (SELECT 1 FROM sends s WHERE s.sms_id = m.sms_id)
          AND (m.parts IS NOT NULL OR m.encoding IS NOT NULL)
        """
    )
    op.execute(
        """
        INSERT INTO projection_pending (event_id, received_at, bytes, part)
        SELECT e.event_id, e.received_at, octet_length(e.body), 0 FROM events e
        WHERE e.sms_id IN (SELECT sms_id FROM sends WHERE sms_id IS NOT NULL)
          AND e.state = 'processed'
          AND NOT EXISTS (SELECT 1 FROM projection_pending p WHERE p.event_id = e.event_id)
        ORDER BY e.received_at, e.event_id
        """
    )


def downgrade() -> None:
    # The estimates are the sends' still; records without them are what 0019 read.
    pass
