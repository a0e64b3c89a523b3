"""What every command shares: its settings (and logging) loaded once, and the types of
its arguments, each refusing a bad value with a message argparse prints.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias
from urllib.parse import urlsplit

from receiver.http import whole_number
from receiver.logging import configure_logging
from receiver.settings import Settings, load_settings

# Only typeshed's class takes a parameter: a string, for mypy alone.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""Where each command module adds its commands (`add_subparsers()`'s answer)."""


def whole(low: int, high: int) -> Callable[[str], int]:
    """An argument type: a whole number from `low` to `high`."""

    def parse(text: str) -> int:
        value = whole_number(text)
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {low} to {high}")
        return value

    return parse


def http_url(text: str) -> str:
    """An argument type: an http:// or https:// URL with a host."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text


def above_zero(what: str) -> Callable[[str], float]:
    """An argument type: a finite number above 0, of `what` (for the error)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {what} above 0")
        return value

    return parse


def timestamp(value: str) -> datetime:
    """An ISO 8601 command-line time; UTC when it names no zone."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def configured() -> Settings:
    settings = load_settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return settings
