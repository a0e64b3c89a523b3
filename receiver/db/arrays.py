"""Rows to column arrays: how a batch travels to PostgreSQL in one `unnest(...)` statement."""

from __future__ import annotations

from collections.abc import Iterable


def columns(rows: Iterable[tuple[object, ...]], width: int) -> list[list[object]]:
    """Transpose `rows` of `width` values into `width` lists, one per statement parameter."""
    result: list[list[object]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(result, row, strict=True):
            column.append(value)
    return result
