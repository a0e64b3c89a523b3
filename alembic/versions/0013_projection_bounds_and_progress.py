"""projection bounds and progress: each pending event's size, and when a batch last committed

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 06:00:00.000000

`projection_pending.bytes` lets a projector bound its batch in bytes as well as in
count (rows queued before this revision count as 0 bytes). `projection_progress`
holds one row, written by every projector batch that takes events: with events
pending and no batch for a while, the projection is stalled, and `/api/v1/status`
says since when. The previous release keeps working against the migrated schema
(it inserts no size, which defaults to 0, and writes no progress).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    op.add_column(
        "projection_pending",
        sa.Column("bytes", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.create_table(
        "projection_progress",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("events", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projection_progress")),
        sa.CheckConstraint("id = 1", name=op.f("ck_projection_progress_one_row")),
    )
    op.execute("INSERT INTO projection_progress (id) VALUES (1)")


def downgrade() -> None:
    op.drop_table("projection_progress")
    op.drop_column("projection_pending", "bytes")
