"""Masking personal data on the server (`RECEIVER_CONSOLE_MASK=numbers,text`).

What is masked never reaches the browser.

- **numbers**: every run of six or more digits with anything but letters between
  them (spaces of any kind and count, any dash or minus sign, dots, commas, colons,
  stars, underscores, brackets, slashes, invisible characters: `+33 6 12 34 56 78`,
  `(646) 982-0800`, `0612-34-56-78`, `Tel336...`), wherever it stands: the number
  fields, `user_data`, idempotency keys, error texts, headers, raw bodies under any
  key, JSON or not (numbers too, `33612345678.0` included). A run shows at most its
  first three digits and its last two, its separators as they were
  (`+336••••••66`, `+33 6 •• •• •• 78`), and never more digits than it hides. Real
  dates and times (`2026-03-02`, `2026-03-02T16:56:04Z`, `16:56:04`) are not numbers.
- **text**: message texts keep only their length, on the message's page and in raw
  bodies under any key that holds one (`text`, `body`, `message`, `content`); a raw
  body that is not JSON cannot be told apart from its text, and is hidden whole.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import orjson

# A date (and time), or a time of day, first, so that its digits are not taken for a
# number (a real one: month 01-12, day 01-31, hours and minutes in range, and nothing
# that goes on as a number after it); otherwise a digit, then at least five more, with
# anything but a letter between them (`[\W_]`: spaces of any kind and count, dashes
# and minus signs, dots, commas, colons, stars, underscores, zero-width and soft
# hyphen characters...).
_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d+)?)?"
_RUNS = re.compile(
    r"(?P<when>\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    rf"(?:[T ]{_TIME}(?:Z|[+-]\d{{2}}:?\d{{2}})?)?(?![\W_]?\d)"
    rf"|(?<!\d){_TIME}(?![\W_]?\d))"
    r"|(?P<number>\+?\d(?:[\W_]*?\d){5,})",
    re.UNICODE,
)
_TEXT_FIELDS = {"text", "body", "message", "content"}
_SHORT_INT = 100_000


class Mask:
    """What the console hides: `numbers`, `text`, both or neither."""

    def __init__(self, hidden: Collection[str]) -> None:
        self.numbers = "numbers" in hidden
        self.text = "text" in hidden

    def number(self, value: str | None) -> str | None:
        """`value` with every run of digits in it masked (when numbers are masked)."""
        if value is None or not self.numbers:
            return value
        return _RUNS.sub(_masked_run, value)

    def message_text(self, value: str | None) -> str | None:
        if value is None or not self.text:
            return value
        return f"[hidden: {len(value)} characters]"

    def excerpt(self, value: str | None, length: int = 40) -> str:
        """The start of a message's text for a list: hidden, or its numbers masked."""
        if value is None:
            return ""
        if self.text:
            return self.message_text(value) or ""
        shown = self.number(value) or ""
        return shown if len(shown) <= length else shown[: length - 1] + "…"

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
            if self.text:
                return f"[hidden: {len(raw)} characters that are not JSON: a text may be in them]"
            return self.number(raw)

    def _masked(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {self.number(k): self._masked(v, k.lower()) for k, v in value.items()}
        if isinstance(value, list):
            return [self._masked(v, key) for v in value]
        if isinstance(value, str):
            if key in _TEXT_FIELDS and self.text:
                return self.message_text(value)
            return self.number(value)
        if self.numbers and isinstance(value, int | float) and abs(value) >= _SHORT_INT:
            return self.number(repr(value))
        return value


def _masked_run(match: re.Match[str]) -> str:
    run = match.group("number")
    if run is None:
        return match.group("when")
    digits = sum(c.isdigit() for c in run)
    # At most three digits shown at the start and two at the end, and never more shown
    # than hidden: a short run shows fewer.
    head, tail = min(3, digits // 2 - 2), 2
    out, seen = [], 0
    for char in run:
        if char.isdigit():
            seen += 1
            out.append(char if seen <= head or seen > digits - tail else "•")
        else:
            out.append(char)
    return "".join(out)
