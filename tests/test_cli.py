"""The `receiver` command as a user runs it: a real process, real HTTP on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from receiver.db import migrate
from receiver.ingest.auth import TOKEN_FILE
from tests.support import example, fetch


def receiver_command(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_help_lists_the_commands() -> None:
    result = receiver_command("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout
    assert "migrate" in result.stdout
    serve_help = receiver_command("serve", "--help")
    for option in ("--host", "--port", "--workers"):
        assert option in serve_help.stdout


def test_an_external_database_without_authentication_refuses_to_start(
    database_url: str,
) -> None:
    result = receiver_command("serve", env={"RECEIVER_DATABASE_URL": database_url})
    assert result.returncode == 2
    assert "no webhook authentication is configured" in result.stderr
    assert "RECEIVER_CALLR_HMAC_SECRETS" in result.stderr


def test_a_bad_setting_is_named_at_start() -> None:
    result = receiver_command("serve", env={"RECEIVER_CALLR_HMAC_ALGORITHM": "sha3"})
    assert result.returncode == 2
    assert "RECEIVER_CALLR_HMAC_ALGORITHM" in result.stderr


def test_migrate_brings_an_empty_database_to_the_head(empty_database_url: str) -> None:
    result = receiver_command("migrate", env={"RECEIVER_DATABASE_URL": empty_database_url})
    assert result.returncode == 0, result.stderr
    rows = asyncio.run(fetch(empty_database_url, "SELECT version_num FROM alembic_version"))
    assert rows == [{"version_num": migrate.head_revision()}]


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """`receiver serve` on a free port with nothing configured: the new user's first run."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RECEIVER_LOG_FORMAT": "json"},
    )
    try:
        yield process, port, tmp_path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def wait_ready(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the service did not become ready in 60 s")


@pytest.mark.slow
def test_serve_with_no_configuration_runs_an_embedded_database_behind_a_token(
    serving: tuple[subprocess.Popen[str], int, Path],
) -> None:
    process, port, folder = serving
    wait_ready(port, process)
    token = (folder / ".receiver" / TOKEN_FILE).read_text().strip()
    base = f"http://127.0.0.1:{port}"
    body = example("v1-sms.mo")
    accepted = httpx.post(f"{base}/webhooks/callr/{token}", content=body, timeout=10)
    refused = httpx.post(f"{base}/webhooks/callr", content=body, timeout=10)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)

    assert accepted.status_code == 200
    assert accepted.json() == {"result": "stored", "event_id": "c5df14852226895334vk6tjqfCS3PFEG"}
    assert refused.status_code == 404
    assert process.returncode == 0, stderr
    # The embedded server stopped with the service, instead of lingering.
    assert not (folder / ".receiver" / "postgres" / "postmaster.pid").exists()
    assert f"listening on    {base}" in stdout
    assert "embedded PostgreSQL in .receiver/postgres" in stdout
    assert f"webhook URL     {base}/webhooks/callr/{token}" in stdout
    assert '"event":"webhook"' in stderr
    assert '"event_id":"c5df14852226895334vk6tjqfCS3PFEG"' in stderr
