"""deploy/: every file checked by a tool that knows its format, and every command line
checked against the `receiver` command it runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from receiver.app import create_app
from receiver.cli import build_parser
from testkit.support import running
from tests.conftest import SettingsFactory

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
MANIFESTS = [path for path in KUBERNETES if path.name != "kustomization.yaml"]
TOOLS = Path(sys.executable).parent


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOOLS / name), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_dockerfile_passes_hadolint() -> None:
    result = tool("hadolint", str(DEPLOY / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && pip install .\n")
    assert tool("hadolint", str(bad)).returncode != 0


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_match_the_api_schemas(manifest: Path) -> None:
    result = tool("kubernetes-validate", "--strict", str(manifest))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kubernetes_validator_does_reject_a_wrong_field(tmp_path: Path) -> None:
    broken = tmp_path / "deployment.yaml"
    text = (DEPLOY / "kubernetes" / "deployment.yaml").read_text()
    broken.write_text(text.replace("terminationGracePeriodSeconds", "terminationGraceSeconds"))
    assert tool("kubernetes-validate", "--strict", str(broken)).returncode != 0


def test_kustomization_lists_every_manifest_but_the_migration_job() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {path.name for path in MANIFESTS} - {"migrate-job.yaml"}


@pytest.mark.parametrize(
    ("compose", "valid"),
    [("compose.yaml", True), ("broken", False)],
)
def test_the_compose_file_matches_the_compose_spec(
    tmp_path: Path, compose: str, valid: bool
) -> None:
    path = DEPLOY / "compose.yaml"
    if not valid:
        path = tmp_path / "compose.yaml"
        path.write_text((DEPLOY / "compose.yaml").read_text().replace("depends_on:", "depend_on:"))
    result = tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(path))
    assert (result.returncode == 0) is valid, result.stdout + result.stderr


def _receiver_command_lines() -> list[tuple[str, list[str]]]:
    """Every `receiver ...` invocation in deploy/, as the arguments after `receiver`."""
    found: list[tuple[str, list[str]]] = []
    for path in KUBERNETES:
        for document in yaml.safe_load_all(path.read_text()):
            text = json.dumps(document)
            for args in re.findall(r'"args": (\[[^\]]*\])', text):
                found.append((path.name, json.loads(args)))
    for prefix, file in (("compose", "compose.yaml"), ("patroni", "patroni/compose.yaml")):
        compose = yaml.safe_load((DEPLOY / file).read_text())
        for name, service in compose["services"].items():
            if "command" in service and name != "etcd":  # etcd's is etcd's own
                found.append((f"{prefix} {name}", service["command"]))
    for unit in (DEPLOY / "systemd").glob("*.service"):
        text = unit.read_text().replace("\\\n", " ")
        for line in re.findall(r"^ExecStart=/opt/receiver/bin/receiver (.*)$", text, re.M):
            found.append((unit.name, shlex.split(line)))
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd is not None, "the Dockerfile has no CMD"
    found.append(("Dockerfile", json.loads(cmd[1])))
    return found


COMMAND_LINES = _receiver_command_lines()


def test_every_place_that_runs_receiver_was_found() -> None:
    places = {place for place, _ in COMMAND_LINES}
    assert {
        "deployment.yaml",
        "compose receiver",
        "patroni receiver",
        "patroni migrate",
        "receiver.service",
        "Dockerfile",
    } <= places
    assert len(COMMAND_LINES) >= 9


@pytest.mark.parametrize(("place", "args"), COMMAND_LINES, ids=[p for p, _ in COMMAND_LINES])
def test_every_command_line_is_one_receiver_accepts(place: str, args: list[str]) -> None:
    # $(VAR) is Kubernetes' own substitution, done before the command runs.
    args = [re.sub(r"\$\(\w+\)", "127.0.0.1", arg) for arg in args]
    build_parser().parse_args(args)


def test_systemd_units_pass_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    receiver = shutil.which("receiver", path=str(TOOLS))
    assert receiver is not None
    for unit in (DEPLOY / "systemd").iterdir():
        # The unit as installed, with the binary where this checkout has it.
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/receiver/bin/receiver", receiver))
    result = subprocess.run(
        [analyze, "verify", *(str(p) for p in sorted(tmp_path.iterdir()))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Only the environment file (absent here) and the user may be unknown.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "receiver.env" not in line
    ]
    assert problems == []


async def exposed_metrics(make_settings: SettingsFactory) -> set[str]:
    """Every series name the service's /metrics can carry."""
    async with running(create_app(make_settings())) as client:
        exposed = (await client.get("/metrics")).text
    names = set(re.findall(r"^# TYPE (\w+) (\w+)$", exposed, re.M))
    known = {name for name, _ in names}
    known |= {
        f"{name}_{suffix}"
        for name, kind in names
        if kind == "histogram"
        for suffix in ("bucket", "sum", "count")
    }
    known |= {f"{name}_total" for name, kind in names if kind == "counter"}
    return known


async def test_the_grafana_dashboard_uses_only_metrics_the_service_exposes(
    make_settings: SettingsFactory,
) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "receiver-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\breceiver_\w+", target["expr"])
    }
    assert used, "the dashboard has no queries"
    known = await exposed_metrics(make_settings)
    assert used <= known, used - known


ALERTS = DEPLOY / "prometheus" / "alerts.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed: CI runs scripts/system-packages first")
        pytest.skip("promtool is not installed (scripts/system-packages installs it)")
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_the_alert_rules_fire_on_what_they_should_and_only_then() -> None:
    result = promtool("test", "rules", str(ALERTS.with_name("alerts.test.yaml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_does_fail_a_rule_that_cannot_fire(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yaml"
    broken.write_text(ALERTS.read_text().replace("> 0\n", "> \n", 1))
    assert promtool("check", "rules", str(broken)).returncode != 0


async def test_the_alert_rules_use_only_metrics_the_service_exposes(
    make_settings: SettingsFactory,
) -> None:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    used = {name for rule in rules for name in re.findall(r"\breceiver_\w+", rule["expr"])}
    assert len(used) == 8
    assert used <= await exposed_metrics(make_settings), used
