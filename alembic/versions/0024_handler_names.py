"""handler names: a name people give a handler, shown instead of its number

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 23:00:00.000000

`handlers.name`, optional and unique (any case) among the handlers that have one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: a nullable column it never reads,
# left empty by its inserts.
backward_compatible = True


def upgrade() -> None:
    op.add_column("handlers", sa.Column("name", sa.Text(), nullable=True))
    op.create_index(
        "ix_handlers_name",
        "handlers",
        [sa.text("lower(name)")],
        unique=True,
        postgresql_where=sa.text("name IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_handlers_name", table_name="handlers")
    op.drop_column("handlers", "name")
