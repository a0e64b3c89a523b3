"""The one-pass decoder agrees with the reference parser on every input.

`parse_envelope` decodes a body with msgspec first (receiver.callr.decoder) and
falls back on the reference reading (receiver.callr.sms) when in doubt. Whatever
the body, the result must be the one the reference alone gives: the same envelope,
snapshot and fingerprint, or the same `Malformed` with the same reason. Checked on
every field of every kind of event, set to values at, inside and past its bounds,
of every JSON type, removed, and on bodies hypothesis makes up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.callr import envelope
from receiver.callr.envelope import Envelope, Malformed, parse_envelope
from receiver.simulate import Mix, Plan
from testkit.support import EXAMPLE_NAMES, example

_ABSENT = object()

# Values tried in every field: each JSON type, the edges of the bounds (64 for
# numbers and statuses, 255 for user_data, 256 for ids, 1,000 for errors), text
# that changes under strip or lower, dates in and out of each format.
PALETTE: list[Any] = [
    _ABSENT,
    None,
    "",
    " ",
    "x",
    " AbC ",
    "İ" * 40,
    "é" * 64,
    "é" * 65,
    "x" * 128,
    "x" * 129,
    "x" * 255,
    "x" * 256,
    "x" * 257,
    "x" * 1000,
    "x" * 1001,
    "a\u0000b",
    0,
    -1,
    7,
    2**31 - 1,
    2**31,
    True,
    False,
    1.0,
    1.5,
    "1.5",
    "4.50",
    "1e400",
    "NaN",
    "0.0000000000001",
    "999999999999",
    "1000000000000",
    [],
    [{}],
    {},
    {"text": "hi"},
    "2026-12-05 10:18:20",
    "2026-12-05 10:18:20.5",
    "2026-12-05T10:18:20",
    "0000-00-00 00:00:00",
    "2026-12-05T10:18:20Z",
    "2026-12-05T10:18:20.123456+02:00",
    "2026-12-05 10:18:20+00:00",
    "2026-13-05T10:18:20Z",
    "SENT",
    "sent",
    "delivered",
    "RECEIVED",
    "outbound",
    "inbound",
    "OUTBOUND",
]


def reference(body: bytes) -> Envelope | Malformed:
    """What the reference parser alone makes of `body`."""
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(envelope, "_decoded", lambda *args, **kwargs: None)
        return parse_envelope(body)


def agree(body: bytes) -> None:
    assert parse_envelope(body) == reference(body), body[:300]


def documents() -> Iterator[dict[str, Any]]:
    """CALLR's examples, and one event of each kind the simulator sends."""
    for name in EXAMPLE_NAMES:
        yield json.loads(example(name))
    kinds: set[tuple[object, bool]] = set()
    for delivery in Plan(40, Mix(), seed=5).deliveries():
        document = delivery.document
        kind = (document["type"], bool(document.get("data", document.get("payload"))))
        if kind not in kinds:
            kinds.add(kind)
            yield document


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field and list entry of a document, nested ones included."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield (*prefix, index)
            yield from paths(inner, (*prefix, index))


def changed(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> bytes:
    copy = json.loads(json.dumps(document))
    *parents, last = path
    target = copy
    for step in parents:
        target = target[step]
    if value is _ABSENT:
        del target[last]
    else:
        target[last] = value
    # The standard library writes what orjson refuses: integers past 64 bits.
    return json.dumps(copy, ensure_ascii=False).encode("utf-8", "surrogatepass")


def mutations() -> Iterator[bytes]:
    for document in documents():
        yield orjson.dumps(document)
        for path in paths(document):
            for value in PALETTE:
                yield changed(document, path, value)


def test_the_decoder_agrees_with_the_reference_on_every_field_and_value() -> None:
    bodies = list(mutations())
    assert len(bodies) > 5_000
    decoded = 0
    for body in bodies:
        agree(body)
        document = orjson.loads(body)
        fields = envelope._V1 if "event_id" in document else envelope._V2
        if envelope._decoded(document, fields, fingerprint=True) is not None:
            decoded += 1
    # Most bodies are decided by the decoder: the comparison is not of the fallback
    # with itself.
    assert decoded > len(bodies) // 3


def test_the_common_events_are_decided_by_the_decoder() -> None:
    for document in documents():
        body = orjson.dumps(document)
        fields = envelope._V1 if "event_id" in document else envelope._V2
        assert envelope._decoded(document, fields, fingerprint=True) is not None, body


def test_bodies_the_decoder_must_leave_to_the_reference() -> None:
    v2 = json.loads(example("v2.sms.outbound.updated"))
    for body in (
        # An escaped NUL, duplicate keys, a lone surrogate, a number past 64 bits,
        # deep nesting, a JSON array, bytes that are not JSON.
        orjson.dumps({**v2, "payload": {**v2["payload"], "to": "+33\u00006"}}),
        orjson.dumps(v2).replace(b'"try":0', b'"try":0,"try":3'),
        orjson.dumps(v2).replace(b'"to":"', b'"to":"\\ud800'),
        orjson.dumps(v2).replace(b'"parts":1', b'"parts":123456789012345678901234567890'),
        orjson.dumps(v2)[:-1] + b',"extra":' + b"[" * 300 + b"]" * 300 + b"}",
        orjson.dumps(v2)[:-1] + b',"extra":' + b"[" * 1000 + b"]" * 1000 + b"}",
        orjson.dumps(v2).replace(b'"body":{', b'"body":{"x":' + b"[" * 1000 + b"]" * 1000 + b","),
        b"[1, 2]",
        b"\xff\xfe",
    ):
        agree(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_decoder_agrees_with_the_reference_on_made_up_values(data: st.DataObject) -> None:
    document = data.draw(st.sampled_from(list(documents())))
    path = data.draw(st.sampled_from(list(paths(document))))
    body = changed(document, path, data.draw(json_values))
    agree(body)
