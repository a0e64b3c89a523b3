"""Whole days of statistics kept for /api/v1/stats, and the prunes of retention."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Identity,
    Index,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from receiver.db.models.base import Base


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
