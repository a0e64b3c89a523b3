"""How many parts an SMS text takes, and in which encoding: GSM 03.38 or unicode.

Pure, offline, by the rules CALLR documents (`../shared/callr/docs/`): GSM 03.38
counts septets, one for a character of the basic set and two for one of the
extension table (`€ [ ] { } \\ ~ ^ |` and form feed), 160 in one SMS or 153 a part
of a longer one; unicode counts UTF-16 code units (an emoji is two), 70 in one SMS
or 67 a part. A character is never split across two parts: an extension
character's two septets, or an emoji's two units, go to the next part together.
Which characters GSM 03.38 holds is the `gsm0338` codec's to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

Encoding = Literal["gsm", "unicode"]
ENCODINGS: tuple[Encoding, ...] = ("gsm", "unicode")
MAX_TEXT = 3200
"""CALLR's limit on the text of one send (sms.send, POST /sms, POST /v2.0/sms)."""

_SINGLE = {"gsm": 160, "unicode": 70}
_PART = {"gsm": 153, "unicode": 67}


@dataclass(frozen=True, slots=True)
class Parts:
    """What a text costs: its encoding, its parts, and why."""

    encoding: Encoding
    parts: int
    units: int
    """Septets (gsm) or UTF-16 code units (unicode)."""
    characters: int
    forced_unicode_by: tuple[str, ...]
    """The characters GSM 03.38 does not hold, which made the text unicode (no encoding asked)."""
    replaced: tuple[str, ...]
    """With `gsm` asked for: the characters GSM 03.38 does not hold, which CALLR replaces."""

    @property
    def unit(self) -> str:
        return "septets" if self.encoding == "gsm" else "UTF-16 code units"


def septets(char: str) -> int | None:
    """How many septets `char` takes in GSM 03.38 (1 or 2); None when it holds none."""
    try:
        return len(char.encode("gsm03.38"))
    except UnicodeEncodeError:
        return None


def parts_of(text: str, encoding: Encoding | None = None) -> Parts:
    """The parts and encoding of `text`; `encoding` forces one (CALLR's force_encoding)."""
    widths = [septets(char) for char in text]
    outside = tuple(dict.fromkeys(c for c, w in zip(text, widths, strict=True) if w is None))
    chosen: Encoding = encoding or ("unicode" if outside else "gsm")
    if chosen == "gsm":
        # A character CALLR replaces takes one septet, as its replacement does.
        sizes = [w or 1 for w in widths]
    else:
        sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
    return Parts(
        encoding=chosen,
        parts=_count(sizes, chosen),
        units=sum(sizes),
        characters=len(text),
        forced_unicode_by=outside if encoding is None and chosen == "unicode" else (),
        replaced=outside if chosen == "gsm" else (),
    )


def _count(sizes: list[int], encoding: Encoding) -> int:
    if sum(sizes) <= _SINGLE[encoding]:
        return 1
    limit, parts, used = _PART[encoding], 1, 0
    for size in sizes:
        if used + size > limit:  # never split a character across two parts
            parts, used = parts + 1, 0
        used += size
    return parts
