"""PostgreSQL servers of a test's own, on ports of their own: a primary made with `initdb`,
a standby made from it with `pg_basebackup`, stopped and promoted as an operator (or
Patroni) would. PostgreSQL's own programs: the machine's (`pg_config --bindir`), else
the embedded server's. As root, the servers run as the `postgres` (or `pgserver`) user:
PostgreSQL refuses root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from receiver.db.programs import ProgramMissing, find


def _bindir() -> Path:
    try:
        return find("pg_ctl", 0).path.parent
    except ProgramMissing:
        raise RuntimeError("no PostgreSQL programs (initdb, pg_ctl) on this machine") from None


def server_user() -> str | None:
    """Whom the servers run as: None (this user) unless this is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root with no postgres (or pgserver) user to run PostgreSQL")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """One PostgreSQL server: its data folder, its port, and what runs it."""

    root: Path
    name: str
    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=_bindir)
    user: str | None = field(default_factory=server_user)

    @property
    def data(self) -> Path:
        return self.root / self.name

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, program: str, *args: str) -> str:
        done = subprocess.run(
            [str(self.bindir / program), *args],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def configure(self, **settings: str) -> None:
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            for name, value in settings.items():
                conf.write(f"{name} = '{value}'\n")

    def init(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self.configure(
            listen_addresses="127.0.0.1",
            port=str(self.port),
            unix_socket_directories=str(self.root),
            wal_level="replica",
            max_wal_senders="5",
            hot_standby="on",
            wal_keep_size="256MB",
            fsync="on",
        )

    def standby_of(self, primary: Server) -> None:
        """This server as a streaming standby of `primary` (its base backup, then WAL)."""
        self.run(
            "pg_basebackup",
            "-h", "127.0.0.1",
            "-p", str(primary.port),
            "-U", "postgres",
            "-D", str(self.data),
            "-R", "-X", "stream", "--checkpoint=fast",
        )  # fmt: skip
        self.configure(
            port=str(self.port),
            primary_conninfo=f"host=127.0.0.1 port={primary.port} user=postgres"
            f" application_name={self.name}",
        )

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def promote(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


async def execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def cluster_folder() -> Iterator[Path]:
    """A folder the servers' user may write in (under /tmp: traversable by it)."""
    root = Path(tempfile.mkdtemp(prefix="receiver-cluster-"))
    user = server_user()
    if user is not None:
        shutil.chown(root, user)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def wait_for_sync(primary: Server, standby: str, *, seconds: float = 30.0) -> None:
    """Until `standby` streams from `primary` as its synchronous standby."""
    deadline = time.monotonic() + seconds
    # `standby` is the test's own name for it.
    query = f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{standby}'"  # noqa: S608
    while time.monotonic() < deadline:
        state = primary.run("psql", "-h", "127.0.0.1", "-p", str(primary.port), "-U",
                            "postgres", "-Atc", query).strip()  # fmt: skip
        if state == "sync":
            return
        time.sleep(0.2)
    raise AssertionError(f"{standby} did not become a synchronous standby in {seconds} s")
