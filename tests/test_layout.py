"""The layout shows the path of the data: import-linter's contracts in pyproject.toml hold it.

scripts/check runs `lint-imports`; these tests make sure that the contracts cover every
part of the package and that each kind of break they exist for is caught.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import receiver

ROOT = Path(receiver.__file__).parent
PROJECT = ROOT.parent
CONFIG = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["importlinter"]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _layers() -> list[list[str]]:
    """The layers contract's parts, lowest layer first."""
    (contract,) = [c for c in CONFIG["contracts"] if c["type"] == "layers"]
    return [
        [part.strip() for part in layer.replace("|", ":").split(":")]
        for layer in reversed(contract["layers"])
    ]


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_part_of_the_package_has_its_layer() -> None:
    parts = {path.stem if path.is_file() else path.name for path in ROOT.iterdir()}
    parts = {p for p in parts if not p.startswith("_") or p == "__main__"}
    parts -= {"__pycache__", "py", "templates", "static"}
    layered = {part for layer in _layers() for part in layer}
    assert parts <= layered, sorted(parts - layered)


def test_the_documented_layout_lists_the_parts_in_the_layers_order() -> None:
    text = (PROJECT / "docs" / "README.md").read_text()
    block = text[text.index("```\nreceiver/\n") :].split("```")[1]
    # "  name/" or "  name.py" at the layout's first level, in the page's order.
    documented = [
        line[2:].split()[0].removesuffix("/").removesuffix(".py")
        for line in block.splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    ]
    rank = {part: n for n, layer in enumerate(_layers()) for part in layer}
    assert set(documented) == set(rank) - {"__main__"}
    ranks = [rank[part] for part in documented]
    assert ranks == sorted(ranks), documented


def test_the_tree_keeps_every_contract() -> None:
    result = _lint(PROJECT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def copy_of_the_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    for name in ("receiver", "testkit", "tests", "bench"):
        shutil.copytree(PROJECT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "pyproject.toml", tree)
    return tree


# (file, the import added to it, the contract that must break)
BREAKS = [
    (
        "receiver/callr/sms.py",
        "from receiver import console",
        "Stages use what is below them on the data path, never what is above",
    ),
    (
        "receiver/callr/api.py",
        "from receiver import metrics",
        "The protocol package (CALLR's shapes and API) uses nothing else of the receiver",
    ),
    (
        "receiver/projection/records.py",
        "import receiver.api.queries",
        "Stages use what is below them on the data path, never what is above",
    ),
    (
        "receiver/console/chart.py",
        "from receiver.console import views",
        "No cycle between the modules of a package",
    ),
    (
        "receiver/db/models/messages.py",
        "from receiver.callr.sms import MAX_TEXT",
        "The schema of record knows nothing of the protocol",
    ),
    (
        "receiver/db/models/messages.py",
        "import testkit.support",
        "The service knows nothing of its tests and benchmarks",
    ),
    (
        "bench/drain.py",
        "from tests import conftest",
        "Tests and benchmarks share testkit, and neither reaches into the other",
    ),
    (
        "testkit/support.py",
        "from tests.conftest import SettingsFactory",
        "testkit is below the tests and the benchmarks",
    ),
]


@pytest.mark.parametrize(("path", "line", "contract"), BREAKS)
def test_an_import_against_the_layout_fails_the_check(
    copy_of_the_tree: Path, path: str, line: str, contract: str
) -> None:
    target = copy_of_the_tree / path
    kept = target.read_text()
    # Inside a function, as imports that dodge a cycle at import time are written.
    target.write_text(f"{kept}\n\ndef _injected() -> None:\n    {line}  # noqa\n")
    try:
        result = _lint(copy_of_the_tree)
    finally:
        target.write_text(kept)
    assert result.returncode == 1, result.stdout
    assert f"{contract} BROKEN" in result.stdout


# The modules allowed past 400 lines, each with its reason in docs/README.md.
LONG_ON_PURPOSE = {"projection/records.py", "forwarding/handlers.py", "sending/requests.py"}


def test_modules_stay_short_but_the_three_that_are_one_piece() -> None:
    long = {
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if len(path.read_text().splitlines()) > 400
    }
    assert long <= LONG_ON_PURPOSE, sorted(long - LONG_ON_PURPOSE)
    text = (PROJECT / "docs" / "README.md").read_text()
    assert all(f"`{module}`" in text for module in LONG_ON_PURPOSE)
