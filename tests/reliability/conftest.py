"""A PostgreSQL server of the test's own, to stop and start, and `receiver serve` processes to kill.

Everything is on this machine: the server listens on a Unix socket in the test's
folder, the receiver on a free loopback port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.db import migrate
from receiver.db.embedded import embedded_database_url, start_embedded
from tests.test_cli import free_port

SECRET = "reliability-secret"


def pg_ctl(args: list[str], **options: Any) -> str:
    """pgserver's pg_ctl (its server binaries), as the user the server runs as."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as on CI.
        warnings.simplefilter("ignore")
        from pgserver._commands import create_command_function
    return str(create_command_function("pg_ctl")(args, **options))


class OwnPostgres:
    """An embedded server in `folder` that a test may stop (gently or not) and start."""

    def __init__(self, folder: Path) -> None:
        self.server: Any = start_embedded(folder, cleanup="delete")
        self.url = embedded_database_url(self.server)
        migrate.upgrade(self.url)

    def stop(self, mode: str = "fast") -> None:
        pg_ctl(["-m", mode, "-w", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    server = OwnPostgres(tmp_path / "own")
    try:
        yield server
    finally:
        server.close()


class Receiver:
    """`receiver serve` on one port, as a process that can be killed and started again."""

    def __init__(self, database_url: str, folder: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.webhook = f"{self.url}/webhooks/callr"
        self.log = folder / "receiver.log"
        self.env = {
            **os.environ,
            "RECEIVER_DATABASE_URL": database_url,
            "RECEIVER_CALLR_HMAC_SECRETS": SECRET,
            "RECEIVER_LOG_FORMAT": "json",
            "RECEIVER_DISPATCHER": "false",
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, ready: str = "/readyz") -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "receiver", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        self.wait(ready)

    def wait(self, path: str, within: float = 60) -> float:
        """Seconds until `path` answers 200."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            assert self.process is not None
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{path} did not answer 200 in {within} s")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def exit_code(self, within: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=within)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def receiver_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Receiver] = []

    def make(database_url: str, **settings: str) -> Receiver:
        receiver = Receiver(database_url, tmp_path, **settings)
        made.append(receiver)
        return receiver

    try:
        yield make
    finally:
        for receiver in made:
            receiver.stop()
