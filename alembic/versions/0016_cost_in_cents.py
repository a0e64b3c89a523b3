"""cost in cents: v2's cost kept apart from v1's debit

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 09:00:00.000000

CALLR documents v2's `cost` in cents and gives v1's `b_customer_debit` with no unit:
one column held both, the greatest winning. `cost_cents` holds v2's from now on;
`receiver rebuild` moves the values of stored v2 events there (until then their
records keep the mixed value in `cost`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    op.add_column("messages", sa.Column("cost_cents", sa.Numeric(), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "cost_cents")
