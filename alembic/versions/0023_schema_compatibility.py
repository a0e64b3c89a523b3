"""schema compatibility: the oldest code that runs on each schema revision

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 18:00:00.000000

Every migration now says whether the release before it runs on the schema it leaves
(`backward_compatible`), and the migration environment records, after each run, the
oldest code revision that runs on the schema it left. `/readyz` of a release whose
head is older than the schema reads it: ready when that release is among them, so a
rolling upgrade keeps the old pods serving while the new ones start.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds a table.
backward_compatible = True


def upgrade() -> None:
    op.create_table(
        "schema_compatibility",
        sa.Column("revision", sa.Text(), nullable=False),
        sa.Column("oldest_code", sa.Text(), nullable=False),
        sa.Column(
            "migrated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_schema_compatibility")),
    )


def downgrade() -> None:
    op.drop_table("schema_compatibility")
