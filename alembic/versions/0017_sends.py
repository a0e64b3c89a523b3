"""sends: SMS sent through the receiver, and CALLR's shared rate

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 09:30:00.000000

`sends` is the record of each `POST /api/v1/sms` (or `receiver send`), projected
from its `receiver.send` events: what was asked, its state, CALLR's SMS id or
refusal, and when the sender acts on it next. `callr_rate` holds the next moment a
call to CALLR may start, shared by every process (sends, reconcile, backfill).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True

_STATES = "state IN ('queued', 'submitted', 'accepted', 'rejected', 'unknown')"


def upgrade() -> None:
    op.create_table(
        "sends",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("request_digest", sa.Text(), nullable=False),
        sa.Column("api", sa.Text(), nullable=False),
        sa.Column("to_number", sa.Text(), nullable=False),
        sa.Column("from_number", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("user_data", sa.Text(), nullable=True),
        sa.Column("nature", sa.Text(), nullable=True),
        sa.Column("encoding", sa.Text(), nullable=False),
        sa.Column("forced_encoding", sa.Text(), nullable=True),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sms_id", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_STATES, name=op.f("ck_sends_state")),
        sa.CheckConstraint("api IN ('v1', 'v2')", name=op.f("ck_sends_api")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sends")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_sends_idempotency_key")),
        sa.UniqueConstraint("sms_id", name=op.f("uq_sends_sms_id")),
    )
    op.create_index(
        "ix_sends_due",
        "sends",
        ["next_at"],
        postgresql_where=sa.text("state IN ('queued', 'submitted')"),
    )
    op.create_index("ix_sends_requested_at", "sends", ["requested_at"])
    op.create_table(
        "callr_rate",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_callr_rate")),
    )


def downgrade() -> None:
    op.drop_table("callr_rate")
    op.drop_index("ix_sends_requested_at", table_name="sends")
    op.drop_index("ix_sends_due", table_name="sends")
    op.drop_table("sends")
