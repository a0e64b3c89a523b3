"""Refused webhook requests per minute, kept in memory for the console's chart.

A refused request (unknown URL, failed authentication, too large) stores nothing,
so the database cannot count it; each app keeps a day of minutes (one per process).
With several worker processes each keeps its own: the console shows the one that
answered it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

_KEEP_MINUTES = 24 * 60 + 1


class MinuteCounts:
    """How many of something happened in each recent minute."""

    def __init__(self) -> None:
        self._minutes: OrderedDict[int, int] = OrderedDict()

    def add(self, now: float | None = None) -> None:
        minute = int((time.time() if now is None else now) // 60)
        self._minutes[minute] = self._minutes.get(minute, 0) + 1
        while len(self._minutes) > _KEEP_MINUTES:
            self._minutes.popitem(last=False)

    def since(self, start: datetime, bucket: timedelta) -> Iterator[tuple[datetime, int]]:
        """(bucket start, count) for the minutes from `start`, in buckets of `bucket`."""
        width = bucket.total_seconds()
        first = start.timestamp()
        for minute, n in list(self._minutes.items()):
            at = minute * 60
            if at >= first:
                yield datetime.fromtimestamp(first + (at - first) // width * width, UTC), n
