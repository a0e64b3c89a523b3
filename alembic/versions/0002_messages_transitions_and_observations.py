"""messages, transitions and observations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 11:07:35.100557
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True

# The statuses as they were at this revision (a later one may add to them).
STATUSES = (
    "created",
    "pending",
    "sent",
    "remote-queued",
    "delivered",
    "error",
    "failed",
    "expired",
    "unknown",
)


def _status(name: str) -> sa.Enum:
    return sa.Enum(*STATUSES, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("sms_id", sa.Text(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("from_number", sa.Text(), nullable=True),
        sa.Column("to_number", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("user_data", sa.Text(), nullable=True),
        sa.Column("encoding", sa.Text(), nullable=True),
        sa.Column("parts", sa.Integer(), nullable=True),
        sa.Column("cost", sa.Numeric(), nullable=True),
        sa.Column("network", sa.Text(), nullable=True),
        sa.Column("nature", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "status",
            _status("status"),
            nullable=False,
        ),
        sa.Column("provider_status", sa.Text(), nullable=False),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_rank", sa.SmallInteger(), nullable=False),
        sa.Column("status_terminal", sa.Boolean(), nullable=False),
        sa.Column("anomaly", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "direction IN ('outbound', 'inbound')", name=op.f("ck_messages_direction")
        ),
        sa.PrimaryKeyConstraint("sms_id", name=op.f("pk_messages")),
    )
    op.create_index(op.f("ix_messages_status_at"), "messages", ["status_at"], unique=False)
    op.create_index(
        op.f("ix_messages_to_number_created_at"),
        "messages",
        ["to_number", "created_at"],
        unique=False,
    )
    op.create_table(
        "observations",
        sa.Column("sms_id", sa.Text(), nullable=False),
        sa.Column(
            "status",
            _status("status"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sms_id", "status", "at", name=op.f("pk_observations")),
    )
    op.create_table(
        "transitions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("sms_id", sa.Text(), nullable=False),
        sa.Column(
            "before",
            _status("before"),
            nullable=False,
        ),
        sa.Column(
            "after",
            _status("after"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("derived", sa.Boolean(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transitions")),
        sa.UniqueConstraint(
            "sms_id", "before", "after", "at", name=op.f("uq_transitions_sms_id_before_after_at")
        ),
    )


def downgrade() -> None:
    op.drop_table("transitions")
    op.drop_table("observations")
    op.drop_index(op.f("ix_messages_to_number_created_at"), table_name="messages")
    op.drop_index(op.f("ix_messages_status_at"), table_name="messages")
    op.drop_table("messages")
