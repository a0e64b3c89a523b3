"""What the receiver keeps of its dealings with CALLR's API: the subscriptions it made,
the reconciliations it ran, the rate shared by every process."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Integer,
    Text,
    func,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from receiver.db.models.base import Base


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


class CallrRate(Base):
    """When the next call to CALLR may start: one rate for every process and every call."""

    __tablename__ = "callr_rate"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
