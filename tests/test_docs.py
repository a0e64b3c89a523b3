"""The documentation against the code: links resolve, every setting is listed as it is,
and the shell and JSON examples run against a test receiver as written."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.app import create_app
from receiver.db.migrate import head_revision
from receiver.settings import Settings
from testkit.support import serving
from tests.conftest import TEST_URL_TOKEN, SettingsFactory

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOKEN = "docs-example-token-0123"
# Where the examples say the receiver listens; the test's receiver stands in.
LOCAL = "http://127.0.0.1:8000"
EXAMPLE = ROOT / "tests" / "examples" / "v1-sms.mt.status_update.json"
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(page.read_text()) if lang == language]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of the page's headings."""
    found = set()
    text = _BLOCK.sub("", page.read_text())
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(page: Path) -> None:
    broken = []
    for target in _LINK.findall(_BLOCK.sub("", page.read_text())):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        unanchored = anchor and resolved.suffix == ".md" and anchor not in anchors(resolved)
        if not resolved.exists() or unanchored:
            broken.append(target)
    assert broken == []


def test_the_readme_starts_with_the_run_and_test_commands_and_stays_short() -> None:
    readme = ROOT / "README.md"
    assert blocks(readme, "sh")[:2] == ["scripts/serve\n", "scripts/test\n"]
    assert len(readme.read_text().splitlines()) <= 150
    # .ci/run calls the README's test command.
    assert "scripts/check" in (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in (ROOT / "scripts" / "check").read_text()


def documented_settings() -> dict[str, str]:
    """`RECEIVER_X` -> the default column of docs/configuration.md's table."""
    rows = re.findall(
        r"^\| `(RECEIVER_[A-Z_]+)` \|([^|]*)\|",
        (ROOT / "docs/configuration.md").read_text(),
        re.M,
    )
    return {name: default.strip().strip("`") for name, default in rows}


def shown(value: Any) -> str:
    """A default as the table writes it."""
    if value is None or value == ():
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_every_setting_is_documented_with_its_default() -> None:
    documented = documented_settings()
    fields = {f"RECEIVER_{name.upper()}": field for name, field in Settings.model_fields.items()}
    assert set(documented) == set(fields)
    for name, field in fields.items():
        if name == "RECEIVER_DATABASE_URL":
            assert documented[name] == "unset: embedded"
            continue
        assert documented[name] == shown(field.default), name


def test_the_json_examples_are_json() -> None:
    for page in PAGES:
        for body in blocks(page, "json"):
            json.loads(body)


def shell_lines(page: Path) -> Iterator[tuple[str, str]]:
    """Each command of the page's `sh` blocks (continuations joined), with the block's
    variable assignments before it, to run first."""
    for body in blocks(page, "sh"):
        assignments: list[str] = []
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if re.match(r"^\w+=", line):
                assignments.append(line)
                continue
            yield "; ".join(assignments), line


# Not run: they start services, send load, or reach hosts other than this one.
_NOT_RUN = ("scripts/", "receiver serve", "receiver simulate", "--to ", "export ")


async def test_the_shell_examples_run_against_a_test_receiver(
    make_settings: SettingsFactory, database_url: str
) -> None:
    settings = make_settings(admin_tokens=TOKEN, dispatcher=False)
    async with serving(create_app(settings)) as base:
        env = {**os.environ, "TOKEN": TOKEN, "RECEIVER_DATABASE_URL": database_url}
        # Something for the examples to find: the example SMS of CALLR's pages.
        webhook = f"{base}/webhooks/callr/{TEST_URL_TOKEN}"
        stored = await _shell(f"curl -sS --data-binary @{EXAMPLE} {webhook}", env)
        assert '"stored"' in stored.stdout, stored
        failures = []
        ran = 0
        for page in PAGES:
            for assignments, line in shell_lines(page):
                if any(marker in line for marker in _NOT_RUN) or "<" in line:
                    continue
                if line.startswith("curl "):
                    command = f"{assignments}; {line}" if assignments else line
                    failure = await run_curl(command.replace(LOCAL, base), env)
                elif re.match(r"^(\.venv/bin/)?receiver ", line):
                    failure = await run_command(line, env)
                else:
                    continue
                ran += 1
                if failure:
                    failures.append(f"{page.relative_to(ROOT)}: {line}\n  {failure}")
        assert ran > 20
        assert failures == []


async def run_curl(line: str, env: dict[str, str]) -> str | None:
    """None when the example reached a route that exists, with the token and parameters
    it shows; what went wrong otherwise."""
    done = await _shell(line + " -sS -w '\\n%{http_code}'", env)
    body, _, code = done.stdout.rpartition("\n")
    status = int(code or 0)
    if done.returncode != 0 or status in (0, 400, 401, 405) or status >= 500:
        return f"exit {done.returncode}, HTTP {status}: {body[:300]} {done.stderr[:300]}"
    if status == 404 and json.loads(body or "{}").get("error") == "Not Found":
        return f"no such route: {body[:200]}"
    return None


async def _shell(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # In a thread: the receiver it talks to runs on this event loop.
    return await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", line],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def run_command(line: str, env: dict[str, str]) -> str | None:
    """None when the command took its arguments (exit 0, or 1 for a refusal it explains)."""
    args = shlex.split(line, comments=True)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "receiver", *args[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    if done.returncode == 0 or (done.returncode == 1 and done.stderr.strip()):
        return None
    return f"exit {done.returncode}: {done.stderr[-500:]}"


def test_the_schema_revision_the_docs_show_is_the_current_one() -> None:
    shown = {
        (page.name, revision)
        for page in PAGES
        for revision in re.findall(r'"schema": "(\d{4})"', page.read_text())
    }
    assert shown, "no page shows the schema revision any more: drop this test"
    assert {revision for _, revision in shown} == {head_revision()}, sorted(shown)
