"""callr api: the subscriptions made, reconcile's bookkeeping, the unsettled outbound SMS

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 16:00:00.000000

Two small tables, and a partial index over the outbound SMS not in a final status
(few rows: it builds fast even on a large `messages` table).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    op.create_table(
        "callr_subscriptions",
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("answer", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_callr_subscriptions")),
    )
    op.create_table(
        "reconciliations",
        sa.Column("sms_id", sa.Text(), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unknown", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("answer_status", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("sms_id", name=op.f("pk_reconciliations")),
    )
    op.create_index(
        "ix_messages_unsettled",
        "messages",
        ["status_at"],
        postgresql_where=sa.text("direction = 'outbound' AND NOT status_terminal"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_unsettled", table_name="messages")
    op.drop_table("reconciliations")
    op.drop_table("callr_subscriptions")
