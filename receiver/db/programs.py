"""PostgreSQL's own programs (`pg_dump`, `pg_restore`), found for a server's version.

A dump is read by a `pg_dump` of the server's major version or newer, and a
`pg_restore` reads what a `pg_dump` of its version or older wrote. They are looked
for where PostgreSQL puts them: the embedded server's own (receiver[embedded]), the
folder `pg_config --bindir` names, the PATH, and Debian's /usr/lib/postgresql/*/bin;
the oldest that is new enough is taken for a dump, the newest for a restore.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from receiver.db.embedded import embedded_bindir
from receiver.db.engine import asyncpg_dsn, password_apart


class ProgramMissing(Exception):
    """No program of that name, of the version needed, is on this machine."""


@dataclass(frozen=True, slots=True, order=True)
class Program:
    major: int
    path: Path

    @property
    def version(self) -> str:
        return f"{self.path.name} {self.major}"


def find(name: str, server_major: int, *, newest: bool = False) -> Program:
    """The program `name` for a server of version `server_major`: the oldest new enough
    (`newest`: the newest, as `pg_restore` for an archive any of them may have written);
    raises `ProgramMissing`, saying what was found and what to install, when none will do."""
    found = sorted({program for folder in _folders() if (program := _program(folder / name))})
    usable = [program for program in found if program.major >= server_major]
    if usable:
        return usable[-1] if newest else usable[0]
    seen = ", ".join(f"{p.major} at {p.path}" for p in found) or "none"
    raise ProgramMissing(
        f"{name} of PostgreSQL {server_major} or newer is needed (found: {seen}): install"
        f" the PostgreSQL client (postgresql-client-{server_major} or newer), or"
        " receiver[embedded], whose server brings its own"
    )


def _folders() -> list[Path]:
    folders = []
    embedded = embedded_bindir()
    if embedded is not None:
        folders.append(embedded)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        # PostgreSQL's own program, found on disk; our arguments, no shell.
        answer = subprocess.run(  # noqa: S603
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=10
        )
        if answer.returncode == 0:
            folders.append(Path(answer.stdout.strip()))
    for name in ("pg_dump", "pg_restore"):
        on_path = shutil.which(name)
        if on_path is not None:
            folders.append(Path(on_path).parent)
    folders += sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    return folders


def _program(path: Path) -> Program | None:
    if not path.is_file():
        return None
    # PostgreSQL's own program, found on disk; our arguments, no shell.
    answer = subprocess.run(  # noqa: S603
        [str(path), "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    version = re.search(r"\(PostgreSQL\) (\d+)", answer.stdout)
    return Program(int(version.group(1)), path) if version else None


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """`url` as PostgreSQL's programs read it, and the environment to run them in: the
    password in PGPASSWORD, never on a command line that `ps` shows."""
    dsn, password = password_apart(asyncpg_dsn(url))
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    return dsn, env
