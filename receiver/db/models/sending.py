"""Sends through the receiver, projected from their steps; the senders' claims on them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.orm import Mapped, mapped_column

from receiver.db.models.base import Base


class Send(Base):
    """An SMS sent through the receiver (`POST /api/v1/sms`, `receiver send`).

    Projected from its `receiver.send` events (receiver.callr.sends): a rebuild gives
    it again. `next_at` is when the sender acts on it next: sends it (queued), looks
    for it at CALLR (submitted, its answer lost or its sender gone). Only its steps
    write it: what a sender holds is in `send_claims`.
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


class SendClaim(Base):
    """A sender's hold on a send, beside the projected `sends` (never in them).

    A send is due when its `next_at` has passed and no claim on its current step
    (`seq`) runs: a sender claims it for a lease (longer than a try), or puts its
    next look-up off (`until`). A step written moves the send's `seq` on, which ends
    the claim; expired and past claims are removed by the senders.
    """

    __tablename__ = "send_claims"

    send_id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
