"""How every list command prints: a table for people, `--json` for scripts.

`--json` prints one JSON object a line (every field, times in ISO 8601), nothing when
the list is empty; the table prints the columns a person scans, times in UTC to the
second, long values cut, and says so on stderr when there is nothing to list.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import orjson

# A column: its header, and the row's value for it.
Column = tuple[str, str]
_WIDEST = 48


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="one JSON object a line, every field (for scripts)"
    )


def print_listing(
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[Column],
    *,
    as_json: bool,
    nothing: str,
) -> None:
    """`rows` as a table of `columns`, or (`as_json`) as JSON lines; `nothing`: what an
    empty table says."""
    if as_json:
        for row in rows:
            print(orjson.dumps(row, default=str).decode())
        return
    if not rows:
        print(nothing, file=sys.stderr)
        return
    cells = [[_cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [
        max(len(header), *(len(line[n]) for line in cells)) for n, (header, _) in enumerate(columns)
    ]
    for line in [[header for header, _ in columns], *cells]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and len(value) >= 20 and value[4:5] == "-" and value[10:11] == "T":
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    text = " ".join(str(value).split())
    return text if len(text) <= _WIDEST else text[: _WIDEST - 1] + "…"
