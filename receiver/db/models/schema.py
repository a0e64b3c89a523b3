"""What the migrations record of the schema they leave, for the code that reads it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Text
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from receiver.db.models.base import Base


class SchemaCompatibility(Base):
    """Each schema revision migrations left, and the oldest code that runs on it.

    Written by the migration environment (alembic/env.py) after every run, from the
    `backward_compatible` each migration declares: a release whose head is this
    revision or any after `oldest_code` up to it serves on this schema, so that the
    release before a compatible migration stays ready while the next one rolls out.
    """

    __tablename__ = "schema_compatibility"

    revision: Mapped[str] = mapped_column(Text, primary_key=True)
    oldest_code: Mapped[str] = mapped_column(Text)
    migrated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=sql_text("now()")
    )
