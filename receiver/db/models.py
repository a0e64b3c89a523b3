"""The schema of record. Alembic migrations are generated from and checked against these models."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

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
    MetaData,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class EventState(enum.StrEnum):
    """What the receiver made of a stored event."""

    PROCESSED = "processed"
    """Understood and applied to the message records."""
    UNHANDLED = "unhandled"
    """Authenticated and well formed, of a type this service does not act on."""
    INVALID = "invalid"
    """Authenticated but not understood; `reason` says why. Kept so that nothing is lost."""


def _enum_values(enum_cls: type[enum.StrEnum]) -> list[str]:
    return [member.value for member in enum_cls]


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
            values_callable=_enum_values,
        )
    )
    reason: Mapped[str | None] = mapped_column(Text)
    subscription: Mapped[str | None] = mapped_column(Text)
    # sha256 of the event without `try` and the subscription id: what must be equal
    # for a later delivery to be the same event.
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    body: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        Index(None, "received_at"),
        Index(None, "type", "received_at"),
        Index(None, "state", "received_at", postgresql_where=text("state <> 'processed'")),
    )


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
    conflict: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    subscription: Mapped[str | None] = mapped_column(Text)
    remote_addr: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (
        UniqueConstraint("event_id", "attempt", "fingerprint"),
        CheckConstraint("attempt >= 0", name="attempt_not_negative"),
        Index(None, "received_at"),
    )
