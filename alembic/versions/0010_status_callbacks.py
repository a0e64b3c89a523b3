"""status callbacks: handlers subscribe to replies and/or status changes; forwards of both kinds

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 17:30:00.000000

Existing handlers keep getting replies only. Existing forwards are replies.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Not: it drops forwards' unique event_id, which the release before's ON CONFLICT
# names.
backward_compatible = False

_LIVE = sa.text("state IN ('pending', 'in_flight')")


def upgrade() -> None:
    op.add_column(
        "handlers",
        sa.Column("replies", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    )
    op.add_column(
        "handlers",
        sa.Column("statuses", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "handlers",
        sa.Column("terminal_only", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_check_constraint(op.f("ck_handlers_some_news"), "handlers", "replies OR statuses")
    op.add_column(
        "forwards",
        sa.Column("kind", sa.Text(), server_default=sa.text("'reply'"), nullable=False),
    )
    op.create_check_constraint(op.f("ck_forwards_kind"), "forwards", "kind IN ('reply', 'status')")
    for name, kind in (
        ("status_before", sa.Text()),
        ("status_after", sa.Text()),
        ("status_at", sa.DateTime(timezone=True)),
        ("status_rank", sa.SmallInteger()),
        ("status_terminal", sa.Boolean()),
    ):
        op.add_column("forwards", sa.Column(name, kind, nullable=True))
    op.drop_constraint("uq_forwards_event_id", "forwards", type_="unique")
    op.create_index(
        "ix_forwards_event_id",
        "forwards",
        ["event_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'reply'"),
    )
    op.create_index(
        "ix_forwards_handler_id_sms_id_status_after",
        "forwards",
        ["handler_id", "sms_id", "status_after"],
        unique=True,
        postgresql_where=sa.text("kind = 'status'"),
    )
    op.create_index(
        "ix_forwards_handler_id_kind_id",
        "forwards",
        ["handler_id", "kind", "id"],
        postgresql_where=_LIVE,
    )


def downgrade() -> None:
    op.execute("DELETE FROM forwards WHERE kind = 'status'")
    op.drop_index("ix_forwards_handler_id_kind_id", table_name="forwards")
    op.drop_index("ix_forwards_handler_id_sms_id_status_after", table_name="forwards")
    op.drop_index("ix_forwards_event_id", table_name="forwards")
    op.create_unique_constraint("uq_forwards_event_id", "forwards", ["event_id"])
    for name in ("status_terminal", "status_rank", "status_at", "status_after", "status_before"):
        op.drop_column("forwards", name)
    op.drop_constraint(op.f("ck_forwards_kind"), "forwards", type_="check")
    op.drop_column("forwards", "kind")
    op.drop_constraint(op.f("ck_handlers_some_news"), "handlers", type_="check")
    for name in ("terminal_only", "statuses", "replies"):
        op.drop_column("handlers", name)
