"""daily statistics: rows per day kept for /api/v1/stats, and the days that changed

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 18:40:29.870766
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    op.create_table(
        "stats_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_changes")),
    )
    op.create_index(op.f("ix_stats_changes_day"), "stats_changes", ["day"], unique=False)
    op.create_table(
        "stats_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("deliveries", sa.BigInteger(), nullable=False),
        sa.Column("retries", sa.BigInteger(), nullable=False),
        sa.Column("conflicts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_stats_days")),
    )
    op.create_table(
        "stats_rows",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("grouping", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("anomaly", sa.Boolean(), nullable=False),
        sa.Column("latency", sa.Float(), nullable=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_rows")),
    )
    op.create_index(op.f("ix_stats_rows_day"), "stats_rows", ["day"], unique=False)
    op.create_index(
        op.f("ix_stats_rows_grouping_day"), "stats_rows", ["grouping", "day"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_stats_rows_grouping_day"), table_name="stats_rows")
    op.drop_index(op.f("ix_stats_rows_day"), table_name="stats_rows")
    op.drop_table("stats_rows")
    op.drop_table("stats_days")
    op.drop_index(op.f("ix_stats_changes_day"), table_name="stats_changes")
    op.drop_table("stats_changes")
