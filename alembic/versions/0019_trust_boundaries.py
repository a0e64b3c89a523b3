"""trust boundaries: the receiver's own events told by where they were stored; times in range

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 10:00:00.000000

`events.own` is true for the events the receiver makes itself (a step of a send, a
registration, an SMS object from CALLR's API), set by the code that stores them,
never by a webhook. Until now they were told by their type and id, which a webhook
could take: a body posted with `"type": "receiver.send"` was stored as `unhandled`,
and a replay or rebuild then applied it (and sent an SMS). Here:

- the events the receiver stored itself (their delivery carries the
  `x-receiver-source` header, which the webhook never keeps) are marked `own`;
- any other event with one of those types or id forms came through the webhook: it
  is marked `invalid` with the reason, and no replay or rebuild applies it.

Times: every time read from a body is now bounded (2000-01-01 to 2099-12-31 UTC).
An event stored earlier with a time beyond what Python reads (year 1 or 10000 in
UTC) made reads of it fail; its time is cleared and it is marked `invalid`. Records
derived from a time out of range are dropped and their SMS's events queued again:
the projector reads them with today's rules, which keep the offending event as
invalid and build the rest.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Not: it drops sends' unique idempotency key, which keeps a key to one send in the
# release before.
backward_compatible = False

_OWN_FORM = """(
    e.type LIKE 'receiver.%' OR e.type LIKE 'callr.api.%'
    OR e.event_id LIKE 'send:%' OR e.event_id LIKE 'registration:%'
    OR e.event_id LIKE 'callr-api:%'
)"""

_OUT = "({column} < '2000-01-01T00:00:00Z' OR {column} >= '2100-01-01T00:00:00Z')"


def _out(*columns: str) -> str:
    return " OR ".join(_OUT.format(column=column) for column in columns)


def upgrade() -> None:
    op.add_column(
        "events",
        sa.Column("own", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute(
        f"""
        UPDATE events e SET own = true
        WHERE {_OWN_FORM}
          AND EXISTS (
              SELECT 1 FROM deliveries d
              WHERE d.event_id = e.event_id AND d.headers ? 'x-receiver-source'
          )
        """
    )
    op.execute(
        f"""
        UPDATE events e SET state = 'invalid', sms_id = NULL,
            reason = 'a webhook that took a type or id form of the receiver''s own events:'
                || ' CALLR never sends one (migration 0019)'
        WHERE NOT e.own AND {_OWN_FORM}
        """
    )
    op.execute(
        f"""
        UPDATE events e SET state = 'invalid', emitted_at = NULL,
            reason = 'its time is out of range: times from 2000-01-01 to 2099-12-31 (UTC)'
                || ' are read (migration 0019)'
        WHERE {_out("e.emitted_at")}
        """
    )
    # The SMS whose records hold a time out of range: built again from their events.
    op.execute(
        f"""
        CREATE TEMPORARY TABLE out_of_range ON COMMIT DROP AS
        SELECT sms_id FROM messages
        WHERE {
            _out(
                "created_at",
                "sent_at",
                "delivered_at",
                "status_at",
                "first_seen_at",
                "last_seen_at",
            )
        }
        UNION SELECT sms_id FROM transitions WHERE {_out("at")}
        UNION SELECT sms_id FROM observations WHERE {_out("at")}
        """
    )
    for table in ("messages", "transitions", "observations"):
        op.execute(f"DELETE FROM {table} WHERE sms_id IN (SELECT sms_id FROM out_of_range)")
    op.execute(
        """
        INSERT INTO projection_pending (event_id, received_at, bytes, part)
        SELECT e.event_id, e.received_at, octet_length(e.body), 0 FROM events e
        WHERE e.sms_id IN (SELECT sms_id FROM out_of_range) AND e.state = 'processed'
          AND NOT EXISTS (SELECT 1 FROM projection_pending p WHERE p.event_id = e.event_id)
        ORDER BY e.received_at, e.event_id
        """
    )
    op.execute(f"UPDATE forwards SET status_at = NULL WHERE {_out('status_at')}")

    # Idempotency keys are each token's own; a send token may be held to a prefix and
    # to senders. Sends made before keep their keys for every token (key_owner NULL).
    op.add_column("sends", sa.Column("key_owner", sa.Text(), nullable=True))
    op.drop_constraint("uq_sends_idempotency_key", "sends", type_="unique")
    op.create_unique_constraint("uq_sends_key_owner_key", "sends", ["key_owner", "idempotency_key"])
    # A reply that two teams' SMS could claim waits for neither: the rule `ambiguous`.
    op.drop_constraint(op.f("ck_forwards_rule"), "forwards", type_="check")
    op.create_check_constraint(
        op.f("ck_forwards_rule"),
        "forwards",
        "rule IN ('user_data', 'recent_mt', 'default', 'unrouted', 'ambiguous')",
    )
    # Failed tries of tokens, by client address, shared by every process.
    op.create_table(
        "auth_failures",
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_auth_failures")),
    )
    # The deployment's random key, made at the first start: cursors and session cookies
    # were signed with a key derived from the environment's tokens alone, which with
    # database tokens only was a public constant.
    op.create_table(
        "deployment_keys",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_deployment_keys_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_keys")),
    )
    op.add_column("api_tokens", sa.Column("user_data_prefix", sa.Text(), nullable=True))
    op.add_column("api_tokens", sa.Column("senders", postgresql.ARRAY(sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_table("deployment_keys")
    op.drop_table("auth_failures")
    op.execute("UPDATE forwards SET rule = 'unrouted' WHERE rule = 'ambiguous'")
    op.drop_constraint(op.f("ck_forwards_rule"), "forwards", type_="check")
    op.create_check_constraint(
        op.f("ck_forwards_rule"),
        "forwards",
        "rule IN ('user_data', 'recent_mt', 'default', 'unrouted')",
    )
    op.drop_column("api_tokens", "senders")
    op.drop_column("api_tokens", "user_data_prefix")
    op.drop_constraint("uq_sends_key_owner_key", "sends", type_="unique")
    # Two tokens' sends under one key: the later ones lose the key, not the send.
    op.execute(
        "UPDATE sends s SET idempotency_key = NULL FROM sends t"
        " WHERE s.idempotency_key = t.idempotency_key"
        " AND (s.requested_at, s.id) > (t.requested_at, t.id)"
    )
    op.create_unique_constraint("uq_sends_idempotency_key", "sends", ["idempotency_key"])
    op.drop_column("sends", "key_owner")
    op.drop_column("events", "own")
