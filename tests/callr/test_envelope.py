from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from receiver.callr.envelope import Envelope, Malformed, parse_envelope
from testkit.support import EXAMPLE_NAMES, example, with_fields


def envelope(body: bytes) -> Envelope:
    parsed = parse_envelope(body)
    assert isinstance(parsed, Envelope), parsed
    return parsed


def malformed(body: bytes) -> Malformed:
    parsed = parse_envelope(body)
    assert isinstance(parsed, Malformed), parsed
    return parsed


def test_v1_status_update_reads_its_envelope() -> None:
    event = envelope(example("v1-sms.mt.status_update"))
    assert event.event_id == "942214623649723405HGNSmlw2sOrjq"
    assert event.type == "sms.mt.status_update"
    assert event.attempt == 0
    assert event.emitted_at == datetime(2026, 3, 2, 16, 56, 7, 140000, tzinfo=UTC)
    assert event.subscription == "IAYHJ6F3"
    assert event.generation == 1
    assert event.object["hash"] == "0LWLNVLH"
    assert event.handled


def test_v2_outbound_update_reads_its_envelope() -> None:
    event = envelope(example("v2.sms.outbound.updated"))
    assert event.event_id == "a033174403257076580mk8v4KiGgZA32"
    assert event.type == "v2.sms.outbound.updated"
    assert event.subscription == "pdszbxss"
    assert event.generation == 2
    assert event.object["sid"] == "callrsid"


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_is_a_handled_event(name: str) -> None:
    assert envelope(example(name)).handled


def test_an_other_event_type_is_well_formed_but_not_handled() -> None:
    event = envelope(with_fields(example("v1-sms.mo"), type="billing.credit", data={"amount": 3}))
    assert not event.handled


def test_a_dynamic_webhook_has_no_subscription_id() -> None:
    assert envelope(with_fields(example("v1-sms.mo"), hook_hash=None)).subscription is None


def test_the_fingerprint_ignores_try_and_subscription() -> None:
    body = example("v1-sms.mt.status_update")
    retried = with_fields(body, try_=3, hook_hash="OTHERSUB")
    assert envelope(body).fingerprint == envelope(retried).fingerprint


def test_the_fingerprint_ignores_key_order_and_spacing() -> None:
    body = example("v2.sms.inbound.received")
    reordered = json.dumps(dict(reversed(list(json.loads(body).items())))).encode()
    assert envelope(body).fingerprint == envelope(reordered).fingerprint


def test_the_fingerprint_sees_any_other_change() -> None:
    body = example("v1-sms.mt.status_update")
    document = json.loads(body)
    document["data"]["status"] = "RECEIVED"
    changed = json.dumps(document).encode()
    assert envelope(body).fingerprint != envelope(changed).fingerprint


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"", "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "body is not valid JSON"),
        (b"[1, 2]", "body is a JSON array, not an object"),
        (b'"text"', "body is a JSON string, not an object"),
        (b'{"type": "sms.mo", "try": 0}', "field 'id' is missing"),
    ],
)
def test_a_body_without_a_usable_id_is_keyed_by_its_hash(body: bytes, reason: str) -> None:
    parsed = malformed(body)
    assert parsed.reason.startswith(reason)
    assert parsed.key == "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"try_": "1"}, "field 'try' must be an integer, not a JSON string"),
        ({"try_": True}, "field 'try' must be an integer, not a JSON boolean"),
        ({"try_": -1}, "field 'try' must be between 0 and"),
        ({"try_": 2**40}, "field 'try' must be between 0 and"),
        ({"try_": None}, "field 'try' is missing"),
        ({"type": 7}, "field 'type' must be a string, not a JSON number"),
        ({"type": ""}, "field 'type' must be 1 to 256 characters"),
        ({"event_at": "yesterday"}, "field 'event_at' is not an ISO 8601 time"),
        ({"event_at": "2026-03-02T17:03:11"}, "field 'event_at' has no time zone"),
        ({"hook_hash": ["a"]}, "field 'hook_hash' must be a string, not a JSON array"),
    ],
)
def test_wrong_field_types_keep_the_event_id(changes: dict[str, object], reason: str) -> None:
    parsed = malformed(with_fields(example("v1-sms.mo"), **changes))
    assert parsed.reason.startswith(reason)
    assert parsed.key == "c5df14852226895334vk6tjqfCS3PFEG"


def test_an_id_with_a_nul_character_is_not_used_as_a_key() -> None:
    body = with_fields(example("v1-sms.mo"), event_id="abc\x00def")
    parsed = malformed(body)
    assert parsed.key.startswith("sha256:")
    assert "without NUL" in parsed.reason


def test_an_id_that_is_not_a_string_is_not_used_as_a_key() -> None:
    parsed = malformed(with_fields(example("v2.sms.outbound.updated"), id=12345))
    assert parsed.key.startswith("sha256:")
    assert parsed.reason == "field 'id' must be a string, not a JSON number"
    assert parsed.type == "v2.sms.outbound.updated"
    assert parsed.attempt == 0


@pytest.mark.parametrize("depth", [255, 300, 600, 1000])
def test_a_body_nested_too_deep_to_fingerprint_is_invalid_not_an_error(depth: int) -> None:
    document = json.loads(example("v2.sms.inbound.received"))
    document["payload"]["extra"] = "DEEP"
    body = json.dumps(document).encode().replace(b'"DEEP"', b"[" * depth + b"]" * depth)
    parsed = parse_envelope(body)
    assert isinstance(parsed, Malformed)
    assert parsed.reason == "body is nested more than 254 levels deep"
    assert parsed.key == "sha256:" + hashlib.sha256(body).hexdigest()


def test_a_body_nested_within_the_bound_is_an_event() -> None:
    document = json.loads(example("v2.sms.inbound.received"))
    document["payload"]["extra"] = "DEEP"
    body = json.dumps(document).encode().replace(b'"DEEP"', b"[" * 200 + b"]" * 200)
    assert isinstance(parse_envelope(body), Envelope)
