"""Who may use the API and the console: tokens, sessions, failed tries, the
deployment's key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
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

from receiver.db.models.base import Base


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
