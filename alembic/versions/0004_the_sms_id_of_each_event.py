"""the sms id of each event

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 11:32:24.586667
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    op.add_column("events", sa.Column("sms_id", sa.Text(), nullable=True))
    op.create_index(
        op.f("ix_events_sms_id_received_at"), "events", ["sms_id", "received_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_events_sms_id_received_at"), table_name="events")
    op.drop_column("events", "sms_id")
