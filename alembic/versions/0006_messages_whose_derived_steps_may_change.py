"""messages whose derived steps may change

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 12:10:48.519238
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column("unexplained", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    # Existing records: the flag must be true wherever an observation has no
    # reported step leading to it, or later events would skip derived steps.
    op.execute(
        """
        UPDATE messages m SET unexplained = true
        WHERE EXISTS (
            SELECT 1 FROM observations o
            WHERE o.sms_id = m.sms_id AND NOT EXISTS (
                SELECT 1 FROM transitions t
                WHERE t.sms_id = o.sms_id AND NOT t.derived AND t.after = o.status
            )
        )
        """
    )


def downgrade() -> None:
    op.drop_column("messages", "unexplained")
