"""Searches by a phone number as people type it: the range of stored E.164 numbers
that start with it, a national number read by RECEIVER_DEFAULT_REGION's rules
(Google's libphonenumber metadata)."""

from __future__ import annotations

import re

import phonenumbers

from receiver.api.params import BadParameter

_NUMBER = re.compile(r"\+?[0-9]{1,20}")


def in_e164(digits: str, region: str) -> str | None:
    """A national number (or its start) of `region` in E.164; None when it is not one.

    A whole number is read by libphonenumber; a start keeps its digits after the
    region's national prefix (`0` in France and the UK, none in the US).
    """
    try:
        whole = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        whole = None
    if whole is not None and phonenumbers.is_possible_number(whole):
        return phonenumbers.format_number(whole, phonenumbers.PhoneNumberFormat.E164)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    prefix = metadata.national_prefix if metadata is not None else None
    if metadata is None or not prefix or not digits.startswith(prefix):
        return None
    return f"+{metadata.country_code}{digits[len(prefix) :]}"


_SPACING = str.maketrans("", "", " -.()")


def number_prefix(text: str, region: str | None = None) -> tuple[str, str]:
    """The range of stored numbers that start with `text` (E.164: a `+` is implied).

    With a `region` (RECEIVER_DEFAULT_REGION), a number written as people of that
    country write it (`06 12 34 00 01` in FR) is read as theirs (`+336123400...`):
    its national prefix replaced by the country code, by the region's own rules.
    Raises `BadParameter` for anything but digits, with an optional leading `+`
    (spaces, dashes, dots and brackets are ignored).
    """
    compact = text.translate(_SPACING)
    if not _NUMBER.fullmatch(compact):
        raise BadParameter(
            "number", "number must be a phone number or its start: digits, optionally after +"
        )
    national = None if compact.startswith("+") or region is None else in_e164(compact, region)
    start = national or (compact if compact.startswith("+") else "+" + compact)
    # Every string that starts with `start` sorts below this one, byte by byte.
    return start, start[:-1] + chr(ord(start[-1]) + 1)
