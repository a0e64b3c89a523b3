"""senders' claims leave the projected sends: a table of their own

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 17:30:00.000000

A sender used to claim a send by moving its `next_at` past a lease, and put a
look-up off the same way: writes into `sends`, a table projected from the sends'
steps, that a rebuild had to carry over by hand. Claims are now rows of
`send_claims` (the send, the step it holds, until when); `sends` is written by its
steps alone. Senders of the release before this one still move `next_at` (this
one waits for that as for a step's) and do not see these claims: side by side, two
senders may take up the same step, and its event id, stored once, keeps the try
from being made twice.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    op.create_table(
        "send_claims",
        sa.Column("send_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("send_id", name=op.f("pk_send_claims")),
    )


def downgrade() -> None:
    op.drop_table("send_claims")
