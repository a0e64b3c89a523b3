"""`receiver backup PATH` and `receiver restore PATH`: the receiver's database in
PostgreSQL's own custom format, written by `pg_dump` (one consistent snapshot, while
the service runs) and read by `pg_restore`, for the embedded database and an external
one alike."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from receiver.cli.arguments import Commands, configured
from receiver.cli.database import connected, open_database, upgrade
from receiver.db.engine import describe
from receiver.db.programs import ProgramMissing, find, libpq

# What pg_dump's custom format starts with.
_MAGIC = b"PGDMP"


def backup_command(args: argparse.Namespace) -> int:
    """Write a consistent backup of the database to PATH."""
    target: Path = args.path
    if target.exists() and not args.force:
        return _fail("backup", f"{target} exists: give another path, or --force to replace it")
    if not target.parent.is_dir():
        return _fail("backup", f"no folder {str(target.parent)!r} to write {target.name} in")
    database = open_database(configured())
    major, revision, _ = asyncio.run(_server(database.session))
    try:
        program = find("pg_dump", major)
    except ProgramMissing as error:
        return _fail("backup", str(error))
    dsn, env = libpq(database.session)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    # Made before pg_dump writes into it: the backup holds secrets, for its owner only.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    started = time.monotonic()
    # PostgreSQL's own program, found on disk; our arguments, no shell.
    done = subprocess.run(  # noqa: S603
        [str(program.path), "--format=custom", "--no-password", f"--file={partial}", dsn],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        return _fail("backup", f"pg_dump failed: {done.stderr.strip()}")
    os.replace(partial, target)
    print(
        f"backed up {describe(database.session)} (schema {revision}) to {target}:"
        f" {_size(target.stat().st_size)} in {time.monotonic() - started:.1f} s"
        f" ({program.version}, {program.path})"
    )
    return 0


def restore_command(args: argparse.Namespace) -> int:
    """Load a backup into an empty database, then migrate it to this code's head."""
    source: Path = args.path
    try:
        with source.open("rb") as file:
            head = file.read(len(_MAGIC))
    except OSError as error:
        return _fail("restore", f"cannot read {source}: {error.strerror}")
    if head != _MAGIC:
        return _fail("restore", f"{source} is not a backup made by `receiver backup`")
    database = open_database(configured())
    major, _, tables = asyncio.run(_server(database.session))
    if tables and not args.force:
        return _fail(
            "restore",
            f"the database {describe(database.session)} is not empty ({tables} tables): restore"
            " into an empty one, or give --force to replace what it holds",
        )
    try:
        program = find("pg_restore", major, newest=True)
    except ProgramMissing as error:
        return _fail("restore", str(error))
    dsn, env = libpq(database.session)
    replace = ["--clean", "--if-exists"] if args.force else []
    started = time.monotonic()
    # PostgreSQL's own program, found on disk; our arguments, no shell.
    done = subprocess.run(  # noqa: S603
        [
            str(program.path),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--no-password",
            *replace,
            f"--dbname={dsn}",
            str(source),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return _fail("restore", f"pg_restore failed, nothing was loaded: {done.stderr.strip()}")
    loaded = time.monotonic() - started
    revision = upgrade(database.session)
    print(
        f"restored {source} into {describe(database.session)} in {loaded:.1f} s; the schema is"
        f" at {revision}"
    )
    return 0


async def _server(url: str) -> tuple[int, str | None, int]:
    """The server's major version, the schema's revision, and how many tables it holds."""
    async with connected(url) as conn:
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog',"
            " 'information_schema')"
        )
        revision = None
        if await conn.fetchval("SELECT to_regclass('alembic_version')"):
            revision = await conn.fetchval("SELECT version_num FROM alembic_version")
        return conn.get_server_version().major, revision, tables


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def _fail(command: str, reason: str) -> int:
    print(f"receiver {command}: {reason}", file=sys.stderr)
    return 1


def add_backup_commands(commands: Commands) -> None:
    backup = commands.add_parser(
        "backup",
        help="write a consistent backup of the database (pg_dump's custom format)",
        description="Write a consistent backup of the receiver's database to PATH, in"
        " pg_dump's custom format, while the service runs. The file holds the"
        " deployment's secrets: it is made readable by its owner only.",
    )
    backup.add_argument("path", type=Path, help="the file to write")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    backup.set_defaults(run=backup_command)
    restore = commands.add_parser(
        "restore",
        help="load a backup into an empty database, then migrate it",
        description="Load a backup made by `receiver backup` into the database (an empty"
        " one, unless --force), in one transaction, then bring its schema to this"
        " release's.",
    )
    restore.add_argument("path", type=Path, help="the backup to load")
    restore.add_argument(
        "--force", action="store_true", help="replace what a non-empty database holds"
    )
    restore.set_defaults(run=restore_command)
