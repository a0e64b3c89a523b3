"""Every list command prints the same way: a table for people, `--json` for scripts,
the same rows in both."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from receiver.app import create_app
from testkit.callr_events import mo_event
from testkit.support import running, until_projected
from tests.conftest import TEST_URL_TOKEN, SettingsFactory
from tests.test_cli import receiver_command

LISTS = [
    (("handlers", "list"), "id", "id"),
    (("forwards", "list"), "id", "id"),
    (("tokens", "list"), "name", "name"),
    (("sends", "list"), "id", "id"),
]


@pytest.fixture
async def filled(make_settings: SettingsFactory, database_url: str) -> dict[str, str]:
    """A database with two of each: handlers, forwards, tokens and sends."""
    env = {
        "RECEIVER_DATABASE_URL": database_url,
        "RECEIVER_CALLR_API_LOGIN": "login",
        "RECEIVER_CALLR_API_PASSWORD": "password",
    }
    for n in range(2):
        for command in (
            ("handlers", "add", "--user-data", f"team-{n}", "--url", f"http://127.0.0.1:9/h{n}"),
            ("tokens", "add", "--scope", "read", "--name", f"dashboard-{n}"),
            ("send", "--to", "+33612345678", "--text", f"hello {n}", "--user-data", f"team-{n}"),
        ):
            done = receiver_command(*command, env=env)
            assert done.returncode == 0, (command, done.stderr)
    async with running(create_app(make_settings(dispatcher=False))) as client:
        for n in range(2):
            reply = mo_event(
                f"mo-{n}", f"MOLIST{n:02d}", sender="+33611111111", user_data=f"team-{n}"
            )
            answer = await client.post(f"/webhooks/callr/{TEST_URL_TOKEN}", content=reply)
            assert answer.status_code == 200, answer.text
        await until_projected(client)
    return env


@pytest.mark.parametrize(("command", "header", "key"), LISTS, ids=lambda c: " ".join(c))
def test_a_table_and_json_lines_of_the_same_rows(
    filled: dict[str, str], command: tuple[str, ...], header: str, key: str
) -> None:
    table = receiver_command(*command, env=filled)
    as_json = receiver_command(*command, "--json", env=filled)
    assert table.returncode == as_json.returncode == 0, (table.stderr, as_json.stderr)
    objects = [json.loads(line) for line in as_json.stdout.splitlines()]
    lines = table.stdout.splitlines()
    assert lines[0].split()[0] == header
    assert len(objects) == 2
    assert [line.split()[0] for line in lines[1:]] == [str(o[key]) for o in objects]
    # People read dates on one line, in UTC, to the second.
    assert all(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line) for line in lines[1:])


def test_an_empty_list_says_so_to_people_and_nothing_to_scripts(database_url: str) -> None:
    env = {"RECEIVER_DATABASE_URL": database_url}
    for command, _, _ in LISTS:
        table = receiver_command(*command, env=env)
        as_json = receiver_command(*command, "--json", env=env)
        assert (table.returncode, as_json.returncode) == (0, 0), command
        assert table.stdout == as_json.stdout == "", command
        assert table.stderr.startswith("no "), command


def test_a_list_whose_reader_went_away_ends_quietly(filled: dict[str, str]) -> None:
    """`receiver handlers list | head -0`: the pipe is closed under it; no traceback."""
    closed_stdout = (
        "import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, 1);"
        " from receiver.cli import main; sys.exit(main(['handlers', 'list']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", closed_stdout],
        env={**os.environ, **filled},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr
    assert "BrokenPipe" not in done.stderr
