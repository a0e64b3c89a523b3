"""Masking personal data on the server (`RECEIVER_CONSOLE_MASK=numbers,text`).

What is masked never reaches the browser: numbers keep their first four and last two
characters, texts only their length. Raw bodies are masked field by field when they
are JSON, and every number-like run of digits otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import orjson

_DIGITS = re.compile(r"\+?\d{6,}")
# The fields of CALLR's events (v1 and v2) that carry a phone number or a text.
_NUMBER_FIELDS = {"from", "to", "sender", "recipient", "number", "msisdn", "phone"}
_TEXT_FIELDS = {"text", "body", "message", "content"}


class Mask:
    """What the console hides: `numbers`, `text`, both or neither."""

    def __init__(self, hidden: Collection[str]) -> None:
        self.numbers = "numbers" in hidden
        self.text = "text" in hidden

    def number(self, value: str | None) -> str | None:
        if value is None or not self.numbers or not _DIGITS.fullmatch(value):
            return value
        return value[:4] + "•" * (len(value) - 6) + value[-2:]

    def message_text(self, value: str | None) -> str | None:
        if value is None or not self.text:
            return value
        return f"[hidden: {len(value)} characters]"

    def body(self, raw: str | None) -> str | None:
        """A raw body for display: indented when it is JSON, masked as configured."""
        if raw is None:
            return None
        try:
            document = orjson.loads(raw)
            # Nesting too deep to indent (orjson stops at 254 levels) or to walk: shown
            # as it came, masked as text.
            return orjson.dumps(self._masked(document), option=orjson.OPT_INDENT_2).decode()
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, RecursionError):
            return _DIGITS.sub(lambda m: self.number(m.group()) or "", raw) if self.numbers else raw

    def _masked(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: self._masked(v, k.lower()) for k, v in value.items()}
        if isinstance(value, list):
            return [self._masked(v, key) for v in value]
        if isinstance(value, str):
            if key in _TEXT_FIELDS:
                return self.message_text(value)
            if key in _NUMBER_FIELDS or _DIGITS.fullmatch(value):
                return self.number(value)
        return value
