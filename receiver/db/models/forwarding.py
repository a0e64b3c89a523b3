"""Handlers, their notices, and the forwards to them with each attempt."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    func,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from receiver.db.models.base import Base, enum_values


class ForwardState(enum.StrEnum):
    """Where the forward of one inbound SMS to its handler stands."""

    UNROUTED = "unrouted"
    """No handler matched; kept, and routed when a matching handler is added."""
    PENDING = "pending"
    """Waiting for its next attempt (`next_attempt_at`)."""
    IN_FLIGHT = "in_flight"
    """Claimed by a dispatcher until `lease_until`; reclaimed if the dispatcher dies."""
    DONE = "done"
    """The handler answered 2xx."""
    DEAD = "dead"
    """Given up (a 4xx that retrying cannot fix, or every attempt used); kept, retryable."""


class Handler(Base):
    """An internal endpoint that receives the inbound SMS routed to it, and (`statuses`) the
    changes of status of the outbound SMS sent with its `user_data`.

    `match` is a `user_data` value; with `prefix` it matches every value that starts
    with it. The default handler has no `match`. An exact match wins over a prefix,
    a longer prefix over a shorter one. `terminal_only`: of the status changes, only
    those to a terminal status.
    """

    __tablename__ = "handlers"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    match: Mapped[str | None] = mapped_column(Text)
    prefix: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    is_default: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str | None] = mapped_column(Text)
    timeout: Mapped[float] = mapped_column(Float, server_default=sql_text("10"))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    replies: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("true"))
    statuses: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    terminal_only: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    # Its policy (NULL: the dispatcher's defaults): answers final for it (any other is
    # tried again), requests in flight at once, requests a second, the retry schedule.
    final_statuses: Mapped[list[int]] = mapped_column(
        ARRAY(Integer), server_default=sql_text("'{}'::integer[]")
    )
    max_in_flight: Mapped[int | None] = mapped_column(Integer)
    rate: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int | None] = mapped_column(Integer)
    first_retry: Mapped[float | None] = mapped_column(Float)
    # The secret before the last rotation, signing beside the new one until then.
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Its health: why and when it was disabled, since when it fails, who hears of it.
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notify_url: Mapped[str | None] = mapped_column(Text)
    # What people call it (unique in any case), shown instead of its number.
    name: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("is_default = (match IS NULL)", name="default_has_no_match"),
        CheckConstraint("replies OR statuses", name="some_news"),
        CheckConstraint("timeout > 0", name="timeout_positive"),
        CheckConstraint("max_in_flight > 0", name="max_in_flight_positive"),
        CheckConstraint("rate > 0", name="rate_positive"),
        CheckConstraint("attempts BETWEEN 1 AND 100", name="attempts_range"),
        CheckConstraint("first_retry > 0", name="first_retry_positive"),
        Index(None, "match", "prefix", unique=True, postgresql_where=sql_text("NOT is_default")),
        Index(None, "is_default", unique=True, postgresql_where=sql_text("is_default")),
        Index(
            "ix_handlers_name",
            sql_text("lower(name)"),
            unique=True,
            postgresql_where=sql_text("name IS NOT NULL"),
        ),
    )


class HandlerNotice(Base):
    """A notice owed to a handler's owners (its `notify_url`): it started failing, it was
    disabled, it recovered. Sent with retries until `sent_at`."""

    __tablename__ = "handler_notices"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    handler_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("handlers.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default=sql_text("0"))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("kind IN ('failing', 'disabled', 'recovered')", name="kind"),
        Index(None, "next_at", postgresql_where=sql_text("sent_at IS NULL")),
    )


class Forward(Base):
    """The outbox row of one inbound SMS (`kind` reply) or one change of an outbound SMS's
    status (`kind` status): written in the projector's transaction that applies it.

    `conversation` orders delivery: a forward waits while an earlier one of its
    conversation is pending or in flight. For a reply it is the handler and the MO's
    sender; for a status change, the handler and the SMS.
    """

    __tablename__ = "forwards"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    kind: Mapped[str] = mapped_column(Text, server_default=sql_text("'reply'"))
    # A reply's MO event; a status change's latest report when it was applied.
    event_id: Mapped[str] = mapped_column(Text)
    sms_id: Mapped[str] = mapped_column(Text)
    handler_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("handlers.id", ondelete="SET NULL")
    )
    rule: Mapped[str] = mapped_column(Text)
    user_data: Mapped[str | None] = mapped_column(Text)
    mt_sms_id: Mapped[str | None] = mapped_column(Text)
    sender: Mapped[str | None] = mapped_column(Text)
    conversation: Mapped[str | None] = mapped_column(Text)
    state: Mapped[ForwardState] = mapped_column(
        Enum(
            ForwardState,
            native_enum=False,
            create_constraint=True,
            length=16,
            name="state",
            values_callable=enum_values,
        )
    )
    attempts: Mapped[int] = mapped_column(Integer, server_default=sql_text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    # A status change: from, to, and the evidence of `to` (its time, rank, terminal).
    status_before: Mapped[str | None] = mapped_column(Text)
    status_after: Mapped[str | None] = mapped_column(Text)
    status_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_rank: Mapped[int | None] = mapped_column(SmallInteger)
    status_terminal: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        CheckConstraint(
            "rule IN ('user_data', 'recent_mt', 'default', 'unrouted', 'ambiguous')", name="rule"
        ),
        CheckConstraint("kind IN ('reply', 'status')", name="kind"),
        # A reply per MO event; a status announced once per handler and SMS.
        Index(None, "event_id", unique=True, postgresql_where=sql_text("kind = 'reply'")),
        Index(
            None,
            "handler_id",
            "sms_id",
            "status_after",
            unique=True,
            postgresql_where=sql_text("kind = 'status'"),
        ),
        # The dispatcher's claim, a share for each handler and kind.
        Index(
            None,
            "handler_id",
            "kind",
            "id",
            postgresql_where=sql_text("state IN ('pending', 'in_flight')"),
        ),
        Index(
            None,
            "next_attempt_at",
            "id",
            postgresql_where=sql_text("state IN ('pending', 'in_flight')"),
        ),
        Index(
            None,
            "conversation",
            "id",
            postgresql_where=sql_text("state IN ('pending', 'in_flight')"),
        ),
        Index(None, "state", "created_at"),
        Index(None, "sms_id"),
        # The replies to an MT.
        Index(None, "mt_sms_id", postgresql_where=sql_text("mt_sms_id IS NOT NULL")),
        Index(None, "sender", "id", postgresql_where=sql_text("state = 'unrouted'")),
    )


class ForwardAttempt(Base):
    """One try at delivering a forward: when, how long, and what came back."""

    __tablename__ = "forward_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    forward_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("forwards.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)
    excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)
