"""Parts and encoding of SMS texts, by CALLR's rules (GSM 03.38 and unicode)."""

from __future__ import annotations

import pytest

from receiver.callr.gsm import Encoding, parts_of, text_matcher

EMOJI = "\U0001f600"  # two UTF-16 code units


@pytest.mark.parametrize(
    ("text", "encoding", "parts", "units"),
    [
        ("a" * 160, "gsm", 1, 160),
        ("a" * 161, "gsm", 2, 161),
        ("a" * 306, "gsm", 2, 306),
        ("a" * 307, "gsm", 3, 307),
        ("€" * 80, "gsm", 1, 160),  # an extension character is two septets
        # 81 euros: 162 septets. 76 fit the first part (152); a 77th would be split.
        ("€" * 81, "gsm", 2, 162),
        # 158 + a 2-septet character: 160 in one SMS.
        ("a" * 158 + "€", "gsm", 1, 160),
        ("a" * 159 + "€", "gsm", 2, 161),
        # 306 septets would fit two parts of 153 if the € could straddle them: it
        # starts the second part whole, and the last "a" needs a third.
        ("a" * 152 + "€" + "a" * 152, "gsm", 3, 306),
        ("a" * 70, "gsm", 1, 70),
        ("ç" * 70, "unicode", 1, 70),
        ("ç" * 71, "unicode", 2, 71),
        ("a" * 68 + EMOJI, "unicode", 1, 70),  # the emoji at the 70 boundary
        ("a" * 69 + EMOJI, "unicode", 2, 71),  # one unit over: two parts
        # Likewise an emoji: 134 units, three parts since it cannot straddle 67.
        ("a" * 66 + EMOJI + "a" * 66, "unicode", 3, 134),
        ("a" * 3200, "gsm", 21, 3200),
        ("ç" * 3200, "unicode", 48, 3200),
    ],
)
def test_parts_and_encoding_over_a_table_of_texts(
    text: str, encoding: str, parts: int, units: int
) -> None:
    found = parts_of(text)
    assert (found.encoding, found.parts, found.units) == (encoding, parts, units)


def test_the_characters_that_forced_unicode_are_named_once_each() -> None:
    found = parts_of("Merci, ça marche ç " + EMOJI)
    assert found.encoding == "unicode"
    assert found.forced_unicode_by == ("ç", EMOJI)
    assert found.replaced == ()


def test_gsm_forced_names_what_callr_replaces() -> None:
    found = parts_of("ça " + EMOJI, "gsm")
    assert (found.encoding, found.replaced, found.forced_unicode_by) == ("gsm", ("ç", EMOJI), ())
    assert found.units == 4  # each replaced character takes one septet


def test_unicode_forced_counts_code_units() -> None:
    found = parts_of("Hello", "unicode")
    assert (found.encoding, found.parts, found.units, found.unit) == (
        "unicode",
        1,
        5,
        "UTF-16 code units",
    )


@pytest.mark.parametrize(
    ("text", "encoding", "stored", "verdict"),
    [
        ("Code 4821", None, "Code 4821", "yes"),
        ("Code 4821", None, "Code 4822", "no"),
        ("STOP au %STOPNUM%", None, "STOP au 36173", "yes"),
        ("STOP au %STOPNUM%", None, "STOP au +33612345678", "yes"),
        ("STOP au %STOPNUM%", None, "STOP au %STOPNUM%", "yes"),
        ("STOP au %STOPNUM%", None, "STOP au ", "no"),
        ("Offre «x» ê", "gsm", 'Offre "x" e', "yes"),  # converted by our table
        ("Offre «x» ê", "gsm", "Offre «x» ê", "yes"),  # kept as written
        ("Offre «x» ê", "gsm", "Offre <<x>> e", "maybe"),  # another table's conversion
        ("Offre «x»", None, 'Offre "x"', "no"),  # not forced: CALLR sends it unicode
        ("a.b*c", None, "aXbbc", "no"),  # the text's own characters are literal
    ],
)
def test_a_text_is_matched_as_callr_may_have_stored_it(
    text: str, encoding: Encoding | None, stored: str, verdict: str
) -> None:
    assert text_matcher(text, encoding).matches(stored) == verdict


def test_forced_gsm_counts_each_replacement_s_septets() -> None:
    assert parts_of("…", "gsm").units == 3  # "..."
    assert parts_of("ê", "gsm").units == 1  # "e"
