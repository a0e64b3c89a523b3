"""handlers and forwards

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 11:20:03.317686
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    op.create_table(
        "handlers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("match", sa.Text(), nullable=True),
        sa.Column("prefix", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("timeout", sa.Float(), server_default=sa.text("10"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "is_default = (match IS NULL)", name=op.f("ck_handlers_default_has_no_match")
        ),
        sa.CheckConstraint("timeout > 0", name=op.f("ck_handlers_timeout_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handlers")),
    )
    op.create_index(
        op.f("ix_handlers_is_default"),
        "handlers",
        ["is_default"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_index(
        op.f("ix_handlers_match_prefix"),
        "handlers",
        ["match", "prefix"],
        unique=True,
        postgresql_where=sa.text("NOT is_default"),
    )
    op.create_table(
        "forwards",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("sms_id", sa.Text(), nullable=False),
        sa.Column("handler_id", sa.BigInteger(), nullable=True),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("user_data", sa.Text(), nullable=True),
        sa.Column("mt_sms_id", sa.Text(), nullable=True),
        sa.Column("sender", sa.Text(), nullable=True),
        sa.Column("conversation", sa.Text(), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "unrouted",
                "pending",
                "in_flight",
                "done",
                "dead",
                name="state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "rule IN ('user_data', 'recent_mt', 'default', 'unrouted')",
            name=op.f("ck_forwards_rule"),
        ),
        sa.ForeignKeyConstraint(
            ["handler_id"],
            ["handlers.id"],
            name=op.f("fk_forwards_handler_id_handlers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forwards")),
        sa.UniqueConstraint("event_id", name=op.f("uq_forwards_event_id")),
    )
    op.create_index(
        op.f("ix_forwards_conversation_id"),
        "forwards",
        ["conversation", "id"],
        unique=False,
        postgresql_where=sa.text("state IN ('pending', 'in_flight')"),
    )
    op.create_index(
        op.f("ix_forwards_next_attempt_at_id"),
        "forwards",
        ["next_attempt_at", "id"],
        unique=False,
        postgresql_where=sa.text("state IN ('pending', 'in_flight')"),
    )
    op.create_index(
        op.f("ix_forwards_sender_id"),
        "forwards",
        ["sender", "id"],
        unique=False,
        postgresql_where=sa.text("state = 'unrouted'"),
    )
    op.create_index(
        op.f("ix_forwards_state_created_at"), "forwards", ["state", "created_at"], unique=False
    )
    op.create_table(
        "forward_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("forward_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("excerpt", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["forward_id"],
            ["forwards.id"],
            name=op.f("fk_forward_attempts_forward_id_forwards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forward_attempts")),
    )
    op.create_index(
        op.f("ix_forward_attempts_forward_id"), "forward_attempts", ["forward_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_forward_attempts_forward_id"), table_name="forward_attempts")
    op.drop_table("forward_attempts")
    op.drop_index(op.f("ix_forwards_state_created_at"), table_name="forwards")
    op.drop_index(
        op.f("ix_forwards_sender_id"),
        table_name="forwards",
        postgresql_where=sa.text("state = 'unrouted'"),
    )
    op.drop_index(
        op.f("ix_forwards_next_attempt_at_id"),
        table_name="forwards",
        postgresql_where=sa.text("state IN ('pending', 'in_flight')"),
    )
    op.drop_index(
        op.f("ix_forwards_conversation_id"),
        table_name="forwards",
        postgresql_where=sa.text("state IN ('pending', 'in_flight')"),
    )
    op.drop_table("forwards")
    op.drop_index(
        op.f("ix_handlers_match_prefix"),
        table_name="handlers",
        postgresql_where=sa.text("NOT is_default"),
    )
    op.drop_index(
        op.f("ix_handlers_is_default"),
        table_name="handlers",
        postgresql_where=sa.text("is_default"),
    )
    op.drop_table("handlers")
