"""indexes for the query api

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 11:54:18.124937
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The release before runs on the schema this leaves: it only adds.
backward_compatible = True


def upgrade() -> None:
    op.create_index(op.f("ix_forwards_sms_id"), "forwards", ["sms_id"], unique=False)
    op.drop_index(op.f("ix_messages_status_at"), table_name="messages")
    op.create_index(
        "ix_messages_created_at_outcomes",
        "messages",
        ["created_at"],
        unique=False,
        postgresql_include=[
            "direction",
            "status",
            "status_terminal",
            "anomaly",
            "sent_at",
            "delivered_at",
            "network",
            "user_data",
        ],
    )
    op.create_index(
        op.f("ix_messages_network_status_at_sms_id"),
        "messages",
        ["network", "status_at", "sms_id"],
        unique=False,
        postgresql_include=["status", "direction"],
    )
    op.create_index(
        op.f("ix_messages_status_at_sms_id"), "messages", ["status_at", "sms_id"], unique=False
    )
    op.create_index(
        op.f("ix_messages_user_data_status_at_sms_id"),
        "messages",
        ["user_data", "status_at", "sms_id"],
        unique=False,
        postgresql_include=["status", "direction"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_messages_user_data_status_at_sms_id"), table_name="messages")
    op.drop_index(op.f("ix_messages_status_at_sms_id"), table_name="messages")
    op.drop_index(op.f("ix_messages_network_status_at_sms_id"), table_name="messages")
    op.drop_index(
        "ix_messages_created_at_outcomes",
        table_name="messages",
        postgresql_include=[
            "direction",
            "status",
            "status_terminal",
            "anomaly",
            "sent_at",
            "delivered_at",
            "network",
            "user_data",
        ],
    )
    op.create_index(op.f("ix_messages_status_at"), "messages", ["status_at"], unique=False)
    op.drop_index(op.f("ix_forwards_sms_id"), table_name="forwards")
