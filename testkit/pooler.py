"""A PgBouncer of a test's own, in front of a PostgreSQL server, configured as most
installations configure it: password authentication from a users file, transaction
pooling, and the startup parameters drivers send that it cannot keep ignored. Nothing
in it is made for the receiver. As root, it runs as the servers' user: PgBouncer
refuses root.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from testkit.cluster import free_port, server_user

USER = "postgres"
PASSWORD = "pooled-secret"


def pgbouncer() -> str | None:
    """The pgbouncer program, where Debian puts it or on the PATH."""
    for candidate in ("/usr/sbin/pgbouncer", shutil.which("pgbouncer")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@dataclass
class PgBouncer:
    """PgBouncer on a port of its own, in front of `server_port` on 127.0.0.1."""

    root: Path
    server_port: int
    port: int = field(default_factory=free_port)
    pool_size: int = 20
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    @property
    def log(self) -> Path:
        return self.root / "pgbouncer.log"

    def start(self) -> None:
        program = pgbouncer()
        if program is None:
            raise RuntimeError("pgbouncer is not installed (scripts/system-packages installs it)")
        (self.root / "userlist.txt").write_text(f'"{USER}" "{PASSWORD}"\n')
        config = self.root / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {self.root / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            f"logfile = {self.log}\n"
            f"pidfile = {self.root / 'pgbouncer.pid'}\n"
        )
        user = server_user()
        if user is not None:
            for path in (config, self.root / "userlist.txt"):
                shutil.chown(path, user)
        errors = self.root / "pgbouncer.err"
        with errors.open("wb") as out:
            self.process = subprocess.Popen(
                [program, str(config)], user=user, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                said = errors.read_text() + (self.log.read_text() if self.log.exists() else "")
                raise RuntimeError(f"pgbouncer ended at its start: {said}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not listen on {self.port} within 15 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
