"""prunes: the runs of receiver prune, which a rebuild must know about

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 18:54:52.698685
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    op.create_table(
        "prunes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("deliveries", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prunes")),
    )


def downgrade() -> None:
    op.drop_table("prunes")
