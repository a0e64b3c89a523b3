"""The schema of record. Alembic migrations are generated from and checked against these models."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from receiver.status import Status

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
    """Understood; applied to the message records by the projector once it is not pending."""
    UNHANDLED = "unhandled"
    """Authenticated and well formed, of a type this service does not act on."""
    INVALID = "invalid"
    """Authenticated but not understood; `reason` says why. Kept so that nothing is lost."""


def _enum_values(enum_cls: type[enum.StrEnum]) -> list[str]:
    return [member.value for member in enum_cls]


def _status_type(name: str) -> Enum:
    return Enum(
        Status,
        native_enum=False,
        create_constraint=True,
        length=16,
        name=name,
        values_callable=_enum_values,
    )


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
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (
        UniqueConstraint("event_id", "attempt", "fingerprint"),
        CheckConstraint("attempt >= 0", name="attempt_not_negative"),
        Index(None, "received_at"),
        # The console's list of conflicting deliveries.
        Index("ix_deliveries_conflicts", "received_at", postgresql_where=sql_text("conflict")),
    )


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
    status: Mapped[Status] = mapped_column(_status_type("status"))
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
    before: Mapped[Status] = mapped_column(_status_type("before"))
    after: Mapped[Status] = mapped_column(_status_type("after"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    derived: Mapped[bool] = mapped_column(Boolean)
    event_id: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("sms_id", "before", "after", "at"),)


class Observation(Base):
    """A status an event's snapshot showed for an SMS, and since when: the evidence for
    the current status and for derived history steps. (No foreign key: see `Transition`.)"""

    __tablename__ = "observations"

    sms_id: Mapped[str] = mapped_column(Text)
    status: Mapped[Status] = mapped_column(_status_type("status"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[str] = mapped_column(Text)

    __table_args__ = (PrimaryKeyConstraint("sms_id", "status", "at"),)


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
            values_callable=_enum_values,
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


class StatsDay(Base):
    """A UTC day whose statistics are kept in `stats_rows` (see receiver.projection.daily_stats).

    The raw-traffic counts of the day are here; its message outcomes are the rows.
    """

    __tablename__ = "stats_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    events: Mapped[int] = mapped_column(BigInteger)
    deliveries: Mapped[int] = mapped_column(BigInteger)
    retries: Mapped[int] = mapped_column(BigInteger)
    conflicts: Mapped[int] = mapped_column(BigInteger)


class StatsRow(Base):
    """How many messages created on `day` share a key, direction, status, anomaly and latency.

    One set of rows per grouping: `''` (none), `network`, `user_data` and `hour`
    (the hour of the day, `'0'` to `'23'`).
    """

    __tablename__ = "stats_rows"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    grouping: Mapped[str] = mapped_column(Text)
    key: Mapped[str | None] = mapped_column(Text)
    direction: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    anomaly: Mapped[bool] = mapped_column(Boolean)
    latency: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "grouping", "day"), Index(None, "day"))


class StatsChange(Base):
    """A day whose statistics may be out of date: its messages or raw traffic changed.

    Written by every transaction that projects or stores events, in the same
    transaction; removed only by a refresh that saw the change.
    """

    __tablename__ = "stats_changes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    day: Mapped[date] = mapped_column(Date)

    __table_args__ = (Index(None, "day"),)


class Prune(Base):
    """One run of `receiver prune`: raw events received before `before` were removed.

    A rebuild refuses to run after one: it would drop the messages those events made.
    """

    __tablename__ = "prunes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    events: Mapped[int] = mapped_column(BigInteger)
    deliveries: Mapped[int] = mapped_column(BigInteger)


class CallrSubscription(Base):
    """A webhook subscription that `receiver callr subscribe` made, as CALLR answered it."""

    __tablename__ = "callr_subscriptions"

    # CALLR's id of the webhook: what its events carry as `hook_hash`.
    hash: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    endpoint: Mapped[str] = mapped_column(Text)
    # CALLR's answer (the webhook object), an HMAC secret in it replaced by a note.
    answer: Mapped[Any] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Reconciliation(Base):
    """What reconcile last learned of an outbound SMS stuck in a non-final status.

    Bookkeeping of the asking, not of the SMS: what CALLR answered is an event.
    """

    __tablename__ = "reconciliations"

    sms_id: Mapped[str] = mapped_column(Text, primary_key=True)
    checks: Mapped[int] = mapped_column(Integer)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # CALLR answered 404: it does not know the SMS any more; never asked again.
    unknown: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    # The status CALLR gave last (its own name), or null.
    answer_status: Mapped[str | None] = mapped_column(Text)


class ConsoleSession(Base):
    """A console sign-in: the cookie names it; signing out ends it in every process at once.

    `token` is a digest of the token that signed in (never the token): a session
    whose token is no longer configured opens nothing.
    """

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    token: Mapped[str] = mapped_column(Text)
    csrf: Mapped[str] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuthFailure(Base):
    """Failed tries of tokens from one client address in the current window
    (receiver.api.throttle): shared by every process, so guessing is bounded for the
    deployment, not per process."""

    __tablename__ = "auth_failures"

    address: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    failures: Mapped[int] = mapped_column(Integer)


class DeploymentKey(Base):
    """The deployment's random key (one row), made at its first start: what signs the
    API's cursors and the console's session cookies (receiver.api.auth.Tokens.secret)."""

    __tablename__ = "deployment_keys"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    key: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)


class ApiToken(Base):
    """A token made with `receiver tokens add` (or the console's Tokens page).

    Kept as a digest, never itself. Beside the tokens of the environment
    (RECEIVER_API_TOKENS, RECEIVER_ADMIN_TOKENS); revoked, it opens nothing within
    seconds in every process.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A send token's limits: the start of every user_data it sends with, and the only
    # senders it may send from (NULL: any).
    user_data_prefix: Mapped[str | None] = mapped_column(Text)
    senders: Mapped[list[str] | None] = mapped_column(ARRAY(Text))

    __table_args__ = (
        CheckConstraint("scope IN ('read', 'send', 'admin')", name="scope"),
        Index(
            "ix_api_tokens_live_name",
            "name",
            unique=True,
            postgresql_where=sql_text("revoked_at IS NULL"),
        ),
    )


class Send(Base):
    """An SMS sent through the receiver (`POST /api/v1/sms`, `receiver send`).

    Projected from its `receiver.send` events (receiver.callr.sends): a rebuild gives
    it again. `next_at` is when the sender acts on it next: sends it (queued), looks
    for it at CALLR (submitted, its answer lost or its sender gone).
    """

    __tablename__ = "sends"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    # Whose the key is (receiver.api.auth.owner_of; "cli" for `receiver send`): another
    # token's same key is another send. NULL for sends made before 0019.
    key_owner: Mapped[str | None] = mapped_column(Text)
    request_digest: Mapped[str] = mapped_column(Text)
    api: Mapped[str] = mapped_column(Text)
    to_number: Mapped[str] = mapped_column(Text)
    from_number: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    user_data: Mapped[str | None] = mapped_column(Text)
    nature: Mapped[str | None] = mapped_column(Text)
    encoding: Mapped[str] = mapped_column(Text)
    forced_encoding: Mapped[str | None] = mapped_column(Text)
    parts: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(Text)
    seq: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    sms_id: Mapped[str | None] = mapped_column(Text, unique=True)
    error: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    """Why the last step was taken (an answer lost, a try again, undecided)."""
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'submitted', 'accepted', 'rejected', 'unknown')", name="state"
        ),
        CheckConstraint("api IN ('v1', 'v2')", name="api"),
        UniqueConstraint("key_owner", "idempotency_key", name="uq_sends_key_owner_key"),
        Index(
            "ix_sends_due",
            "next_at",
            postgresql_where=sql_text("state IN ('queued', 'submitted')"),
        ),
        Index("ix_sends_requested_at", "requested_at"),
    )


class CallrRate(Base):
    """When the next call to CALLR may start: one rate for every process and every call."""

    __tablename__ = "callr_rate"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
