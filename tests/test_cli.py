"""The `receiver` command as a user runs it: a real process, real HTTP on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

from receiver.app import create_app
from receiver.cli import database
from receiver.cli.access import ADMIN_TOKEN_FILE
from receiver.db import migrate
from receiver.db.engine import describe
from receiver.ingest.auth import TOKEN_FILE
from testkit.support import console_sign_in_sync, example, fetch, running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory


def receiver_command(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("replay", "--batch", "0"), "--batch: '0' is not a whole number from 1 to 100000"),
        (("prune", "--events-older-than", "90d", "--batch", "-1"), "--batch: '-1' is not"),
        (("replay", "--to", "staging.internal"), "--to: 'staging.internal' is not an http://"),
        (("replay", "--to", "http://h/", "--rate", "0"), "--rate: '0' is not a number of"),
        (("replay", "--to", "http://h/", "--rate", "nan"), "--rate: 'nan' is not a number of"),
        (("replay", "--to", "http://h/", "--concurrency", "0"), "--concurrency: '0' is not"),
        (("forwards", "list", "--limit", "0"), "--limit: '0' is not a whole number from 1"),
        (
            ("replay", "--since", "2026-11-02", "--until", "2026-11-01"),
            "--since must be before --until",
        ),
        # uvicorn took 99999 and listened on another port than the one announced.
        (("serve", "--port", "99999"), "--port: '99999' is not a whole number from 1 to 65535"),
        (("serve", "--workers", "0"), "--workers: '0' is not a whole number from 1 to 64"),
        (("serve", "--graceful-timeout", "-1"), "--graceful-timeout: '-1' is not"),
        (("simulate", "--url", "localhost:8000"), "--url: 'localhost:8000' is not an http://"),
        (("simulate", "--url", "http://h/", "--duration", "0"), "--duration: '0' is not a"),
        (("simulate", "--url", "http://h/", "--messages", "ten"), "--messages: 'ten' is not"),
        # Was a traceback after the whole run, its report lost.
        (
            ("simulate", "--url", "http://h/", "--json", "/no-such-folder/report.json"),
            "--json: cannot write '/no-such-folder/report.json': no writable folder",
        ),
    ],
)
def test_numbers_and_urls_that_make_no_sense_are_refused_up_front(
    args: tuple[str, ...], message: str
) -> None:
    # Nothing configured: the command must stop before it looks for a database.
    result = receiver_command(*args, env={"RECEIVER_DATABASE_URL": "postgresql://127.0.0.1:1/x"})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# A command of each family that reads or writes the tables.
TABLE_COMMANDS = [
    ("handlers", "list"),
    ("forwards", "list"),
    ("tokens", "list"),
    ("sends", "list"),
    ("replay", "--dry-run"),
    ("prune", "--events-older-than", "90d", "--dry-run"),
]


def test_a_command_on_a_database_without_the_current_schema_says_to_migrate(
    empty_database_url: str,
) -> None:
    env = {"RECEIVER_DATABASE_URL": empty_database_url}
    where = describe(empty_database_url)
    for command in TABLE_COMMANDS:
        result = receiver_command(*command, env=env)
        assert result.returncode == 1, (command, result.stderr)
        assert result.stderr == (
            f"receiver: the database {where} has no schema: run `receiver migrate`\n"
        ), command

    head = migrate.head_revision()
    before = ScriptDirectory.from_config(migrate.alembic_config("")).get_revision(head)
    assert before is not None
    assert isinstance(before.down_revision, str)
    migrate.upgrade(empty_database_url, before.down_revision)
    behind = receiver_command("handlers", "list", env=env)
    assert behind.returncode == 1
    assert behind.stderr == (
        f"receiver: the database {where} is at schema revision {before.down_revision},"
        f" this receiver needs {head}: run `receiver migrate`\n"
    )

    assert receiver_command("migrate", env=env).returncode == 0
    listed = receiver_command("handlers", "list", env=env)
    assert listed.returncode == 0, listed.stderr


def test_a_database_a_newer_release_migrated_is_left_alone(empty_database_url: str) -> None:
    env = {"RECEIVER_DATABASE_URL": empty_database_url}
    assert receiver_command("migrate", env=env).returncode == 0
    asyncio.run(
        fetch(
            empty_database_url,
            "UPDATE alembic_version SET version_num = 'from_a_newer_release' RETURNING 1",
        )
    )
    said = (
        f"receiver: the database {describe(empty_database_url)} is at schema revision"
        f" from_a_newer_release, which this receiver ({migrate.head_revision()}) does not"
        " know: a newer release migrated it and recorded no older code that runs on it;"
        " run that release\n"
    )
    # `migrate` was alembic's traceback; the others told to run `migrate`.
    for command in [("migrate",), ("handlers", "list")]:
        result = receiver_command(*command, env=env)
        assert (result.returncode, result.stderr) == (1, said), command


def test_a_command_says_when_it_cannot_reach_the_database() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/receiver"
    for command in TABLE_COMMANDS:
        result = receiver_command(*command, env={"RECEIVER_DATABASE_URL": url})
        assert result.returncode == 1, (command, result.stderr)
        assert result.stderr.startswith(f"receiver: cannot reach the database {describe(url)}: "), (
            command
        )
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_command_before_the_first_serve_migrates_the_embedded_database(tmp_path: Path) -> None:
    # A new user registering a handler before ever running the service.
    added = receiver_command(
        "handlers", "add", "--default", "--url", "http://127.0.0.1:9/replies", cwd=tmp_path
    )
    listed = receiver_command("handlers", "list", "--json", cwd=tmp_path)

    assert added.returncode == 0, added.stderr
    assert listed.returncode == 0, listed.stderr
    assert '"url":"http://127.0.0.1:9/replies"' in listed.stdout
    assert (tmp_path / ".receiver" / "postgres").is_dir()


def start_serve(folder: Path, port: int, **settings: str) -> subprocess.Popen[str]:
    """`receiver serve --port PORT` run in `folder`, with `settings` added to the environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--port", str(port)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **settings},
    )


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """`receiver serve` on a free port with nothing configured: the new user's first run."""
    port = free_port()
    process = start_serve(tmp_path, port, RECEIVER_LOG_FORMAT="json")
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
    admin_file = folder / ".receiver" / ADMIN_TOKEN_FILE
    admin = admin_file.read_text().strip()
    with httpx.Client(base_url=base, timeout=10) as browser:
        signed_in = console_sign_in_sync(browser, admin)
    handlers = httpx.get(
        f"{base}/api/v1/handlers", headers={"authorization": f"Bearer {admin}"}, timeout=10
    )
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
    # The first start made an admin token, readable by this user only, and said where.
    assert stat.S_IMODE(admin_file.stat().st_mode) == 0o600
    assert f"console         {base}/console" in stdout
    assert f"admin token in {Path('.receiver') / ADMIN_TOKEN_FILE}" in stdout
    assert admin not in stdout
    assert signed_in.status_code == 303
    assert "receiver_console=" in signed_in.headers["set-cookie"]
    assert handlers.status_code == 200
    assert '"event":"webhook"' in stderr
    assert '"event_id":"c5df14852226895334vk6tjqfCS3PFEG"' in stderr


@pytest.mark.slow
def test_an_external_database_without_tokens_keeps_the_console_closed(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    process = start_serve(
        tmp_path, port, RECEIVER_DATABASE_URL=database_url, RECEIVER_CALLR_URL_TOKEN=TEST_URL_TOKEN
    )
    try:
        wait_ready(port, process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as browser:
            attempt = console_sign_in_sync(browser, "")
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert "console, API    closed: no RECEIVER_API_TOKENS or RECEIVER_ADMIN_TOKENS" in stdout
    assert attempt.status_code == 401
    assert not (tmp_path / ".receiver" / ADMIN_TOKEN_FILE).exists()


def test_a_database_that_never_answers_is_named_with_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(database, "CONNECT_TIMEOUT", 0.5)
    with socket.socket() as silent:  # accepts connections, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/receiver"
        with pytest.raises(database.DatabaseNotReady) as refused:
            database.upgrade(url)
    assert str(refused.value) == f"cannot reach the database {url}: TimeoutError"


def test_the_worker_projects_what_serve_processes_left_to_it(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """Serve processes with RECEIVER_PROJECTOR=false store; `receiver worker` projects."""

    async def store() -> None:
        async with running(create_app(make_settings(projector=False))) as client:
            answer = await client.post(
                f"/webhooks/callr/{TEST_URL_TOKEN}", content=example("v1-sms.mo")
            )
            assert answer.status_code == 200

    asyncio.run(store())
    assert asyncio.run(fetch(database_url, "SELECT count(*) AS n FROM messages")) == [{"n": 0}]
    env = {**os.environ, "RECEIVER_DATABASE_URL": database_url, "RECEIVER_DISPATCHER": "false"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "receiver", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        asyncio.run(until_projected(database_url, seconds=30))
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert asyncio.run(fetch(database_url, "SELECT count(*) AS n FROM forwards")) == [{"n": 1}]
    assert "worker_started" in output


def test_a_worker_with_nothing_to_run_says_so() -> None:
    env = {"RECEIVER_DISPATCHER": "false", "RECEIVER_PROJECTOR": "false"}
    done = receiver_command("worker", env=env)
    assert done.returncode == 2
    assert "nothing to run" in done.stderr
    # With CALLR's credentials, the sender runs: the same two settings leave it alone.
    sends = receiver_command(
        "worker", env={**env, "RECEIVER_CALLR_API_KEY": "k", "RECEIVER_SENDER": "false"}
    )
    assert sends.returncode == 2


@pytest.mark.slow
def test_serve_starts_while_an_external_database_is_away(tmp_path: Path) -> None:
    port, nowhere = free_port(), free_port()
    process = start_serve(
        tmp_path,
        port,
        RECEIVER_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{nowhere}/receiver",
        RECEIVER_CALLR_URL_TOKEN=TEST_URL_TOKEN,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=15)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert health.status_code == 200
    assert ready.status_code == 503
    assert "the database did not answer to say which it keeps" in stdout
