"""projection partitions: the queue cut by phone number, so that projectors work at once

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 10:00:00.000000

Each pending event carries its partition (`part`, 0 to 15): a hash of the phone
number on the far side of its SMS (the `to` of an outbound SMS, the `from` of an
inbound one). A projector holds a few partitions at a time, so that several work at
once while every number's events stay in the order they were stored. Each partition
has its own progress row (id = part + 1): batches of different partitions never
wait on one row. Rows queued by the previous release have partition 0, and its
projectors, which take the turn lock exclusively, keep the new ones (which take it
shared) out while they work: a rolling upgrade reorders nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves (its projectors and these take
# turns, above).
backward_compatible = True

PARTS = 16


def upgrade() -> None:
    op.add_column(
        "projection_pending",
        sa.Column("part", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index("ix_projection_pending_part_id", "projection_pending", ["part", "id"])
    op.drop_constraint(op.f("ck_projection_progress_one_row"), "projection_progress", type_="check")
    op.create_check_constraint(
        op.f("ck_projection_progress_one_row_a_part"),
        "projection_progress",
        f"id BETWEEN 1 AND {PARTS}",
    )
    op.execute(
        f"INSERT INTO projection_progress (id) SELECT generate_series(2, {PARTS})"
        " ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    op.execute("DELETE FROM projection_progress WHERE id > 1")
    op.drop_constraint(
        op.f("ck_projection_progress_one_row_a_part"), "projection_progress", type_="check"
    )
    op.create_check_constraint(
        op.f("ck_projection_progress_one_row"), "projection_progress", "id = 1"
    )
    op.drop_index("ix_projection_pending_part_id", table_name="projection_pending")
    op.drop_column("projection_pending", "part")
