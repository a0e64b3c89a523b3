"""The layout shows the path of the data: every import runs from a stage to one below it."""

from __future__ import annotations

import ast
from pathlib import Path

import receiver

# Lowest first. A module may import from its own part and from the parts before it.
ORDER = [
    {"settings", "logging", "http", "heap", "metrics"},
    {"callr"},
    {"reports"},
    {"db"},
    {"forwarding"},
    {"projection"},
    {"ingest"},
    {"replay"},
    {"sending"},
    {"api"},
    {"console"},
    {"health"},
    {"app", "asgi"},
    {"simulate"},
    {"cli", "__main__"},
]
RANK = {part: n for n, parts in enumerate(ORDER) for part in parts}
ROOT = Path(receiver.__file__).parent


def _part(module: str) -> str:
    return module.split(".")[1]


def _imports(path: Path) -> set[str]:
    """The receiver modules `path` imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.startswith("receiver."))
    return found


def test_every_part_of_the_package_has_its_place() -> None:
    parts = {path.stem if path.is_file() else path.name for path in ROOT.iterdir()}
    parts = {p for p in parts if not p.startswith("_") or p == "__main__"} - {"py"}
    assert parts - {"__pycache__"} <= set(RANK), sorted(parts - set(RANK))


def test_no_import_runs_from_a_stage_to_one_above_it() -> None:
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        if module.endswith(".__init__"):
            module = module.removesuffix(".__init__")
        if module == "receiver":
            continue
        here = RANK[_part(module)]
        upward += [
            f"{module} imports {name}" for name in _imports(path) if RANK[_part(name)] > here
        ]
    assert upward == []


def test_the_protocol_uses_no_stage() -> None:
    for path in (ROOT / "callr").rglob("*.py"):
        assert {_part(name) for name in _imports(path)} <= {"callr"}, path
