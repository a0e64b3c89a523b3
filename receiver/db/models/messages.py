"""What the projection makes of the events: a record per SMS, its status history and
its observations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Text,
    UniqueConstraint,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.orm import Mapped, mapped_column

from receiver.db.models.base import Base, status_type
from receiver.status import Status


class Message(Base):
    """The current state of one SMS, keyed by its id in lower case (v1 `hash` = v2 `sid`).

    Every field is an order-independent function of the events seen for the SMS:
    descriptive fields keep the greatest non-empty value reported (they do not change
    over an SMS's life), times the earliest, and the status the greatest point of
    evidence under the order (terminal, time, lifecycle rank, name): nothing moves out
    of a terminal status, and a late, older report does not move the status back.
    """

    __tablename__ = "messages"

    sms_id: Mapped[str] = mapped_column(Text, primary_key=True)
    direction: Mapped[str] = mapped_column(Text)
    from_number: Mapped[str | None] = mapped_column(Text)
    to_number: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    user_data: Mapped[str | None] = mapped_column(Text)
    encoding: Mapped[str | None] = mapped_column(Text)
    parts: Mapped[int | None] = mapped_column(Integer)
    # v1's b_customer_debit as CALLR gives it (no unit documented), and v2's cost in
    # cents: two units, never mixed in one column.
    cost: Mapped[Decimal | None] = mapped_column(Numeric)
    cost_cents: Mapped[Decimal | None] = mapped_column(Numeric)
    network: Mapped[str | None] = mapped_column(Text)
    nature: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[Status] = mapped_column(status_type("status"))
    provider_status: Mapped[str] = mapped_column(Text)
    status_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_rank: Mapped[int] = mapped_column(SmallInteger)
    status_terminal: Mapped[bool] = mapped_column(Boolean)
    anomaly: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    # Some observation has no reported step leading to it: derived steps may change
    # when the SMS gets an event (see receiver.projection).
    unexplained: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("direction IN ('outbound', 'inbound')", name="direction"),
        # Dashboards page newest first by keyset (status_at, sms_id), unfiltered or by
        # network or user_data; stats read a window of created_at from the index alone.
        Index(None, "status_at", "sms_id"),
        Index(None, "network", "status_at", "sms_id", postgresql_include=["status", "direction"]),
        Index(None, "user_data", "status_at", "sms_id", postgresql_include=["status", "direction"]),
        Index(
            "ix_messages_created_at_outcomes",
            "created_at",
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
        ),
        # An MO looks for the latest MT sent to its sender.
        Index(None, "to_number", "created_at"),
        # Searches by a phone number or its start (range conditions, `~>=~` and `~<~`).
        Index(
            "ix_messages_from_number_prefix",
            "from_number",
            postgresql_ops={"from_number": "text_pattern_ops"},
            postgresql_include=["status_at", "sms_id", "status", "direction"],
        ),
        Index(
            "ix_messages_to_number_prefix",
            "to_number",
            postgresql_ops={"to_number": "text_pattern_ops"},
            postgresql_include=["status_at", "sms_id", "status", "direction"],
        ),
        # Reconcile's candidates: the outbound SMS not in a final status (a few).
        Index(
            "ix_messages_unsettled",
            "status_at",
            postgresql_where=sql_text("direction = 'outbound' AND NOT status_terminal"),
        ),
    )


class Transition(Base):
    """One step of an SMS's status history, stored once however many events report it.

    Reported steps come from the provider's history lists and are never removed.
    Derived steps (`derived`) fill a gap that no history shows, between two statuses
    the receiver saw in snapshots; they are re-inferred from all the evidence each
    time the SMS gets a new event, and a reported step replaces a derived one.

    No foreign key to `messages`: the projection writes the message row first in the
    same transaction, and the per-row key check cost a fifth of its throughput.
    """

    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    sms_id: Mapped[str] = mapped_column(Text)
    before: Mapped[Status] = mapped_column(status_type("before"))
    after: Mapped[Status] = mapped_column(status_type("after"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    derived: Mapped[bool] = mapped_column(Boolean)
    event_id: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("sms_id", "before", "after", "at"),)


class Observation(Base):
    """A status an event's snapshot showed for an SMS, and since when: the evidence for
    the current status and for derived history steps. (No foreign key: see `Transition`.)"""

    __tablename__ = "observations"

    sms_id: Mapped[str] = mapped_column(Text)
    status: Mapped[Status] = mapped_column(status_type("status"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[str] = mapped_column(Text)

    __table_args__ = (PrimaryKeyConstraint("sms_id", "status", "at"),)
