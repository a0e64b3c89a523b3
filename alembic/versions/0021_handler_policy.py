"""a policy and a health per handler: what it retries, how fast, and who hears of it

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 14:00:00.000000

Handlers get what used to be one setting for all: the answers that are final for
them (`final_statuses`; none by default: every other answer is tried again), the
requests in flight to them at once (`max_in_flight`), a rate (`rate`, requests a
second), a retry schedule (`attempts`, `first_retry`), a secret's predecessor kept
for an overlap (`previous_secret` until `previous_secret_until`), why and when it was
disabled (`disabled_reason`, `disabled_at`), since when it fails (`failing_since`,
set at the first failure after a success) and where its owners hear of it
(`notify_url`). `handler_notices` holds the notices owed to them, sent with retries.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    add = op.add_column
    add(
        "handlers",
        sa.Column(
            "final_statuses",
            postgresql.ARRAY(sa.Integer()),
            server_default=sa.text("'{}'::integer[]"),
            nullable=False,
        ),
    )
    add("handlers", sa.Column("max_in_flight", sa.Integer(), nullable=True))
    add("handlers", sa.Column("rate", sa.Float(), nullable=True))
    add("handlers", sa.Column("attempts", sa.Integer(), nullable=True))
    add("handlers", sa.Column("first_retry", sa.Float(), nullable=True))
    add("handlers", sa.Column("previous_secret", sa.Text(), nullable=True))
    add("handlers", sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True))
    add("handlers", sa.Column("disabled_reason", sa.Text(), nullable=True))
    add("handlers", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    add("handlers", sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))
    add("handlers", sa.Column("notify_url", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_handlers_max_in_flight_positive"), "handlers", "max_in_flight > 0"
    )
    op.create_check_constraint(op.f("ck_handlers_rate_positive"), "handlers", "rate > 0")
    op.create_check_constraint(
        op.f("ck_handlers_attempts_range"), "handlers", "attempts BETWEEN 1 AND 100"
    )
    op.create_check_constraint(
        op.f("ck_handlers_first_retry_positive"), "handlers", "first_retry > 0"
    )
    op.create_table(
        "handler_notices",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("handler_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('failing', 'disabled', 'recovered')", name=op.f("ck_handler_notices_kind")
        ),
        sa.ForeignKeyConstraint(
            ["handler_id"],
            ["handlers.id"],
            name=op.f("fk_handler_notices_handler_id_handlers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handler_notices")),
    )
    op.create_index(
        op.f("ix_handler_notices_next_at"),
        "handler_notices",
        ["next_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_handler_notices_next_at"), table_name="handler_notices")
    op.drop_table("handler_notices")
    for name in (
        "max_in_flight_positive",
        "rate_positive",
        "attempts_range",
        "first_retry_positive",
    ):
        op.drop_constraint(op.f(f"ck_handlers_{name}"), "handlers", type_="check")
    for column in (
        "notify_url",
        "failing_since",
        "disabled_at",
        "disabled_reason",
        "previous_secret_until",
        "previous_secret",
        "first_retry",
        "attempts",
        "rate",
        "max_in_flight",
        "final_statuses",
    ):
        op.drop_column("handlers", column)
