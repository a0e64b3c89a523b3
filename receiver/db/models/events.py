"""Events as stored: each once with its raw body, every delivery of it, and the queue
the projector takes them from."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from receiver.db.models.base import Base, enum_values


class EventState(enum.StrEnum):
    """What the receiver made of a stored event."""

    PROCESSED = "processed"
    """Understood; applied to the message records by the projector once it is not pending."""
    UNHANDLED = "unhandled"
    """Authenticated and well formed, of a type this service does not act on."""
    INVALID = "invalid"
    """Authenticated but not understood; `reason` says why. Kept so that nothing is lost."""


class Event(Base):
    """One CALLR event, stored once per event id with its raw body byte for byte.

    `event_id` is the provider's id (`event_id` in v1, `id` in v2). A body that carries
    no usable id (broken JSON, not an object, no id) is keyed `sha256:<hex of the body>`,
    so that a repeat of the same broken body is still recorded once.
    """

    __tablename__ = "events"

    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str | None] = mapped_column(Text)
    emitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[EventState] = mapped_column(
        Enum(
            EventState,
            native_enum=False,
            create_constraint=True,
            length=16,
            name="state",
            values_callable=enum_values,
        )
    )
    reason: Mapped[str | None] = mapped_column(Text)
    subscription: Mapped[str | None] = mapped_column(Text)
    # The SMS a handled event reports (lower case), for finding an SMS's events.
    sms_id: Mapped[str | None] = mapped_column(Text)
    # sha256 of the event without `try` and the subscription id: what must be equal
    # for a later delivery to be the same event.
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    # Made by the receiver itself (receiver.callr.own), set only by the code that makes
    # such events: never by the webhook, whatever its body says (migration 0019).
    own: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))

    __table_args__ = (
        Index(None, "received_at"),
        Index(None, "type", "received_at"),
        Index(None, "state", "received_at", postgresql_where=sql_text("state <> 'processed'")),
        Index(None, "sms_id", "received_at"),
    )


class PendingEvent(Base):
    """A stored event that the projector has not applied yet (see receiver.projection).

    Written in the transaction that stores the event, deleted in the one that projects
    it: a small table of rows inserted and deleted, so that the large `events` table
    is written once per event and never updated to say it was projected.
    """

    __tablename__ = "projection_pending"

    # The order events are claimed in: about the order they were stored.
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The raw body's size: a projector's batch is bounded in bytes as well as in count.
    bytes: Mapped[int] = mapped_column(Integer, server_default=sql_text("0"))
    # The partition (receiver.projection.store.part_of): one phone number's events in one.
    part: Mapped[int] = mapped_column(SmallInteger, server_default=sql_text("0"))

    __table_args__ = (Index("ix_projection_pending_part_id", "part", "id"),)


class ProjectionProgress(Base):
    """When a projector batch last committed, and how many events batches have taken.

    One row a partition of the queue (id = part + 1), written by each batch that takes
    events of it: events pending and no batch for a while is a stalled projection
    (`/api/v1/status`, `receiver_projection_stalled_seconds`).
    """

    __tablename__ = "projection_progress"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    events: Mapped[int] = mapped_column(BigInteger, server_default=sql_text("0"))

    # One row a partition of the queue: id = part + 1.
    __table_args__ = (CheckConstraint("id BETWEEN 1 AND 16", name="one_row_a_part"),)


class Delivery(Base):
    """One distinct arrival of an event: its try, when, through which subscription, from where.

    An exact repeat (same event, same try, same content) adds no row. A delivery whose
    content differs from the stored event beyond `try` and the subscription id is a
    conflict: it keeps its own body and never changes the event.
    """

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[str] = mapped_column(
        Text, ForeignKey("events.event_id", ondelete="CASCADE", onupdate="CASCADE")
    )
    attempt: Mapped[int | None] = mapped_column(Integer)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    conflict: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    subscription: Mapped[str | None] = mapped_column(Text)
    remote_addr: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, object]] = mapped_column(JSONB)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (
        UniqueConstraint("event_id", "attempt", "fingerprint"),
        CheckConstraint("attempt >= 0", name="attempt_not_negative"),
        Index(None, "received_at"),
        # The console's list of conflicting deliveries.
        Index("ix_deliveries_conflicts", "received_at", postgresql_where=sql_text("conflict")),
    )
