"""Progress of a long command: a bar on a terminal, a log line every few seconds elsewhere."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

import structlog
from tqdm import tqdm

log = structlog.get_logger("receiver.cli.progress")


class Progress:
    """Count, rate and time left for `total` units of work."""

    def __init__(
        self,
        total: int,
        *,
        label: str,
        unit: str = "event",
        stream: TextIO = sys.stderr,
        every: float = 5.0,
    ) -> None:
        self._label = label
        self._total = total
        self._done = 0
        self._every = every
        self._started = self._last = time.monotonic()
        self._bar = (
            tqdm(total=total, desc=label, unit=unit, file=stream, dynamic_ncols=True)
            if stream.isatty()
            else None
        )

    def advance(self, count: int) -> None:
        self._done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._log("progress")

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()

    def _log(self, event: str) -> None:
        elapsed = time.monotonic() - self._started
        rate = self._done / elapsed if elapsed > 0 else 0.0
        left = (self._total - self._done) / rate if rate > 0 else None
        log.info(
            event,
            task=self._label,
            done=self._done,
            total=self._total,
            rate_per_s=round(rate, 1),
            seconds_left=round(left, 1) if left is not None else None,
        )
