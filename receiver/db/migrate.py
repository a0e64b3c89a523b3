"""Alembic, driven from code: upgrade, check for drift, and read the head revision."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import receiver

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
