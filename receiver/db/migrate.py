"""Alembic, driven from code: upgrade, check for drift, read the head revision, and
tell whether this code runs on the database's schema."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import receiver
from receiver.db.engine import Connection

_PACKAGE_DIR = Path(receiver.__file__).resolve().parent


def migrations_dir() -> Path:
    """The alembic folder: inside the installed wheel, or at the top of a source checkout."""
    for candidate in (_PACKAGE_DIR / "_alembic", _PACKAGE_DIR.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the alembic migrations folder is missing from this installation")


def alembic_config(database_url: str) -> Config:
    """An alembic configuration aimed at `database_url`, independent of the working directory."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # Passed as an attribute, not an option: a '%' in a password would break
    # alembic's configparser interpolation.
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (the latest by default)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Take the schema back to `revision`."""
    command.downgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raise when the models and the migrations disagree (`alembic check`)."""
    command.check(alembic_config(database_url))


def head_revision() -> str:
    """The revision the code expects the database to be at."""
    script = ScriptDirectory.from_config(alembic_config(""))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError("the migrations have no head revision")
    return head


def known(revision: str) -> bool:
    """Whether `revision` is one of this code's migrations (not one of a newer release)."""
    return revision in _revisions()


@functools.cache
def _revisions() -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config(""))
    return frozenset(each.revision for each in script.walk_revisions())


def oldest_code(script: ScriptDirectory, revision: str) -> str:
    """The oldest code revision that runs on the schema `revision` leaves: back from it
    for as long as each migration declares that the code before it runs on what it
    leaves (`backward_compatible`; a migration that does not say is taken for no)."""
    oldest = revision
    migration = script.get_revision(revision)
    while (
        migration is not None
        and getattr(migration.module, "backward_compatible", False) is True
        and isinstance(migration.down_revision, str)
    ):
        oldest = migration.down_revision
        migration = script.get_revision(oldest)
    return oldest


@dataclass(frozen=True, slots=True)
class Schema:
    """The database's schema revision beside this code's, and whether this code runs on it."""

    revision: str | None
    head: str
    oldest_code: str | None = None
    """What the migrations recorded of `revision`: the oldest code that runs on it."""

    @property
    def newer(self) -> bool:
        """A newer release migrated it: a revision this code does not know."""
        return self.revision is not None and not known(self.revision)

    @property
    def compatible(self) -> bool:
        """This code runs on it: its own head, or a newer revision whose record names
        code at or before this code's head (the migrations are one line)."""
        if self.revision == self.head:
            return True
        return self.newer and self.oldest_code is not None and known(self.oldest_code)

    def problem(self, *, who: str = "this code") -> str | None:
        """Why this code cannot serve on the schema, saying what to do; None when it can."""
        if self.revision is None:
            return "has no schema: run `receiver migrate`"
        if self.compatible:
            return None
        if not self.newer:
            return (
                f"is at schema revision {self.revision}, {who} needs {self.head}:"
                " run `receiver migrate`"
            )
        said = (
            f"is at schema revision {self.revision}, which {who} ({self.head}) does not know:"
            " a newer release migrated it"
        )
        if self.oldest_code is None:
            return said + " and recorded no older code that runs on it; run that release"
        return said + f" for code from {self.oldest_code} on; run that release"


async def read_schema(conn: Connection) -> Schema:
    """The database's `Schema` for this code, read on `conn`."""
    head = head_revision()
    try:
        revision: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
    except asyncpg.exceptions.UndefinedTableError:
        return Schema(None, head)
    oldest: str | None = None
    if revision != head and await conn.fetchval("SELECT to_regclass('schema_compatibility')"):
        oldest = await conn.fetchval(
            "SELECT oldest_code FROM schema_compatibility WHERE revision = $1", revision
        )
    return Schema(revision, head, oldest)
