"""console searches: phone numbers by their start, the replies to an MT, conflicting deliveries

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:00:00.000000

Indexes only; no data changes. On a large `messages` table the two number indexes
take a while to build (docs/configuration.md gives a measured figure).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


# What a page of a number search needs, read from the index alone.
_PAGE = ["status_at", "sms_id", "status", "direction"]


def upgrade() -> None:
    op.create_index(
        "ix_messages_from_number_prefix",
        "messages",
        ["from_number"],
        postgresql_ops={"from_number": "text_pattern_ops"},
        postgresql_include=_PAGE,
    )
    op.create_index(
        "ix_messages_to_number_prefix",
        "messages",
        ["to_number"],
        postgresql_ops={"to_number": "text_pattern_ops"},
        postgresql_include=_PAGE,
    )
    op.create_index(
        op.f("ix_forwards_mt_sms_id"),
        "forwards",
        ["mt_sms_id"],
        postgresql_where=sa.text("mt_sms_id IS NOT NULL"),
    )
    op.create_index(
        "ix_deliveries_conflicts",
        "deliveries",
        ["received_at"],
        postgresql_where=sa.text("conflict"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_conflicts", table_name="deliveries")
    op.drop_index(op.f("ix_forwards_mt_sms_id"), table_name="forwards")
    op.drop_index("ix_messages_to_number_prefix", table_name="messages")
    op.drop_index("ix_messages_from_number_prefix", table_name="messages")
