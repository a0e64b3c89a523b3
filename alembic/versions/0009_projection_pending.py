"""projection_pending: stored events the projector has not applied yet

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 16:20:00.000000

Events stored before this revision were projected in the transaction that stored
them, so the table starts empty. Receivers of the release before this one go on
projecting in their own transactions and never write here; receivers of this one
write here and project behind the answer. Both may share the database during a
rolling upgrade: each event is stored once, by one of them, and projected by that
one's path.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    op.create_table(
        "projection_pending",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projection_pending")),
    )


def downgrade() -> None:
    # What is still pending would never be projected by the release before this one,
    # which projects on ingest only: refuse rather than lose it.
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM projection_pending) THEN
                RAISE EXCEPTION 'events are still pending projection: run `receiver worker`'
                    ' until /api/v1/status says pending 0, then downgrade';
            END IF;
        END $$
        """
    )
    op.drop_table("projection_pending")
