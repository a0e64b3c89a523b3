"""How many parts an SMS text takes, and in which encoding: GSM 03.38 or unicode.

Pure, offline, by the rules CALLR documents (`../shared/callr/docs/`): GSM 03.38
counts septets, one for a character of the basic set and two for one of the
extension table (`€ [ ] { } \\ ~ ^ |` and form feed), 160 in one SMS or 153 a part
of a longer one; unicode counts UTF-16 code units (an emoji is two), 70 in one SMS
or 67 a part. A character is never split across two parts: an extension
character's two septets, or an emoji's two units, go to the next part together.
Which characters GSM 03.38 holds is the `gsm0338` codec's to say.

`%STOPNUM%` is CALLR's: with a custom sender, CALLR replaces it by the STOP number
before it counts the parts. The receiver counts it as that number: the one
RECEIVER_CALLR_STOP_NUMBER names, else a number of `ASSUMED_STOP_DIGITS` digits
(the length of the French short codes that STOP mentions use, the case CALLR's
substitution exists for). Without a sender, CALLR leaves it as it is.

`text_matcher` tells whether a text CALLR shows (in a look-up, a webhook) is the one
a send asked for, as CALLR may have stored it: `%STOPNUM%` replaced by a number,
and with GSM forced, the characters GSM 03.38 lacks replaced.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

Encoding = Literal["gsm", "unicode"]
ENCODINGS: tuple[Encoding, ...] = ("gsm", "unicode")
MAX_TEXT = 3200
"""CALLR's limit on the text of one send (sms.send, POST /sms, POST /v2.0/sms)."""

STOPNUM = "%STOPNUM%"
ASSUMED_STOP_DIGITS = 5
"""The STOP number's length when RECEIVER_CALLR_STOP_NUMBER does not give it."""

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
    stop_number_length: int | None = None
    """The length `%STOPNUM%` was counted as, when CALLR replaces it (a custom sender)."""
    stop_number_assumed: bool = False
    """Whether that length is ASSUMED_STOP_DIGITS (no RECEIVER_CALLR_STOP_NUMBER)."""

    @property
    def unit(self) -> str:
        return "septets" if self.encoding == "gsm" else "UTF-16 code units"


def septets(char: str) -> int | None:
    """How many septets `char` takes in GSM 03.38 (1 or 2); None when it holds none."""
    try:
        return len(char.encode("gsm03.38"))
    except UnicodeEncodeError:
        return None


def parts_of(
    text: str,
    encoding: Encoding | None = None,
    *,
    sender: str | None = None,
    stop_number: str | None = None,
) -> Parts:
    """The parts and encoding of `text` as CALLR sends it; `encoding` forces one (CALLR's
    force_encoding). With a custom `sender`, `%STOPNUM%` counts as the STOP number:
    `stop_number`, else ASSUMED_STOP_DIGITS digits."""
    stop_length: int | None = None
    if sender and STOPNUM in text:
        stand_in = stop_number or "0" * ASSUMED_STOP_DIGITS
        stop_length = len(stand_in)
        text = text.replace(STOPNUM, stand_in)
    widths = [septets(char) for char in text]
    outside = tuple(dict.fromkeys(c for c, w in zip(text, widths, strict=True) if w is None))
    chosen: Encoding = encoding or ("unicode" if outside else "gsm")
    if chosen == "gsm":
        # A character CALLR replaces takes the septets of its replacement (to_gsm's).
        sizes = [w or len(to_gsm(c).encode("gsm03.38")) for c, w in zip(text, widths, strict=True)]
    else:
        sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
    return Parts(
        encoding=chosen,
        parts=_count(sizes, chosen),
        units=sum(sizes),
        characters=len(text),
        forced_unicode_by=outside if encoding is None and chosen == "unicode" else (),
        replaced=outside if chosen == "gsm" else (),
        stop_number_length=stop_length,
        stop_number_assumed=stop_length is not None and not stop_number,
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


# What a forced GSM is known to turn the commonest characters outside GSM 03.38 into
# (CALLR: "« becomes \", € becomes e"); the others lose their accents, or become "?".
_TO_GSM = {
    "\u00ab": '"',  # «
    "\u00bb": '"',  # »
    "\u201c": '"',  # “
    "\u201d": '"',  # ”
    "\u201e": '"',  # „
    "\u2018": "'",  # left single quotation mark
    "\u2019": "'",  # right single quotation mark
    "\u201a": "'",  # single low-9 quotation mark
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2026": "...",  # …
    "\u20ac": "e",  # €
    "\u00a0": " ",  # no-break space
    "\u2022": "-",  # •
    "\u0153": "oe",  # œ
    "\u0152": "OE",  # Œ
}


_callr_table: dict[str, str] = {}


def use_callr_table(table: dict[str, str]) -> None:
    """Convert with CALLR's own table (sms.get_gsm_charset_mapping) from now on, in this
    process: its entries win over the offline table's. Only entries whose replacement
    GSM 03.38 holds are kept."""
    global _callr_table
    _callr_table = {
        char: out for char, out in table.items() if all(septets(c) is not None for c in out)
    }


def to_gsm(text: str) -> str:
    """`text` as a forced GSM sends it: CALLR's table when fetched (`use_callr_table`),
    else an offline stand-in for it."""
    out = []
    for char in text:
        if char in _callr_table:
            out.append(_callr_table[char])
        elif char in _TO_GSM:
            out.append(_TO_GSM[char])
        elif septets(char) is not None:
            out.append(char)
        else:
            bare = "".join(
                c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
            )
            out.append(bare if bare and all(septets(c) for c in bare) else "?")
    return "".join(out)


# What CALLR may put in place of %STOPNUM%: a number, with or without its plus.
_STOP_NUMBER_PATTERN = r"(?:%STOPNUM%|\+?[0-9]{2,15})"


@dataclass(frozen=True, slots=True)
class TextMatcher:
    """Whether a text CALLR shows is a send's text, as CALLR may have stored it.

    `exact`: the text itself, or with `%STOPNUM%` replaced by a number, or (GSM
    forced) converted by `to_gsm`. `loose`: the same, except that the characters GSM
    03.38 lacks may have become anything of up to four characters each: a text that
    only `loose` matches may be the send's, converted by a table other than ours.
    """

    exact: re.Pattern[str]
    loose: re.Pattern[str]

    def matches(self, stored: str | None) -> Literal["yes", "maybe", "no"]:
        if stored is None:
            return "no"
        if self.exact.fullmatch(stored):
            return "yes"
        return "maybe" if self.loose.fullmatch(stored) else "no"


def text_matcher(text: str, encoding: Encoding | None) -> TextMatcher:
    """The matcher of a send's `text` sent with the forced `encoding` (or none)."""
    segments = text.split(STOPNUM)
    exact = []
    for segment in segments:
        forms = {re.escape(segment)}
        if encoding == "gsm":
            forms.add(re.escape(to_gsm(segment)))
        exact.append("(?:" + "|".join(sorted(forms)) + ")")
    loose = [_loose(segment) if encoding == "gsm" else re.escape(segment) for segment in segments]
    return TextMatcher(
        exact=re.compile(_STOP_NUMBER_PATTERN.join(exact), re.DOTALL),
        loose=re.compile(_STOP_NUMBER_PATTERN.join(loose), re.DOTALL),
    )


def _loose(segment: str) -> str:
    """A segment whose runs of characters outside GSM 03.38 match any 0 to 4 characters each."""
    out: list[str] = []
    run = 0
    for char in segment + "\x00":
        if char != "\x00" and septets(char) is None:
            run += 1
            continue
        if run:
            out.append(f".{{0,{4 * run}}}")
            run = 0
        if char != "\x00":
            out.append(re.escape(char))
    return "".join(out)
