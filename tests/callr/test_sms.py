from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from receiver.callr.envelope import Envelope, Malformed, parse_envelope
from receiver.callr.sms import (
    MAX_ERROR,
    MAX_NETWORK,
    MAX_NUMBER,
    MAX_STATUS,
    MAX_TEXT,
    MAX_USER_DATA,
    SmsInvalid,
    Snapshot,
    map_status,
    parse_sms,
)
from receiver.status import Status
from testkit.support import example


def snapshot(body: bytes) -> Snapshot:
    parsed = parse_envelope(body)
    assert isinstance(parsed, Envelope), parsed
    assert parsed.sms is not None
    return parsed.sms


def changed(name: str, **fields: Any) -> bytes:
    document = json.loads(example(name))
    key = "data" if "data" in document else "payload"
    document[key].update(fields)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("raw", "generation", "status"),
    [
        ("CREATED", 1, Status.CREATED),
        ("PENDING", 1, Status.PENDING),
        ("SENT", 1, Status.SENT),
        ("REMOTE_QUEUED", 1, Status.REMOTE_QUEUED),
        ("RECEIVED", 1, Status.DELIVERED),
        ("DELIVERED", 1, Status.DELIVERED),
        ("ERROR", 1, Status.ERROR),
        ("FAILED", 1, Status.FAILED),
        ("EXPIRED", 1, Status.EXPIRED),
        ("remote-queued", 2, Status.REMOTE_QUEUED),
        ("delivered", 2, Status.DELIVERED),
        ("expired", 2, Status.EXPIRED),
        ("BOUNCED", 1, Status.UNKNOWN),
        ("received", 2, Status.UNKNOWN),
        # Not as CALLR writes them, still understood.
        (" delivered", 1, Status.DELIVERED),
        ("Remote-Queued ", 2, Status.REMOTE_QUEUED),
    ],
)
def test_statuses_map_to_the_v2_vocabulary(raw: str, generation: int, status: Status) -> None:
    assert map_status(raw, generation=generation) is status


def test_a_v1_status_update_becomes_a_snapshot() -> None:
    sms = snapshot(example("v1-sms.mt.status_update"))
    assert sms.sms_id == "0lwlnvlh"
    assert sms.direction == "outbound"
    assert (sms.from_number, sms.to_number) == ("SMS", "+33612345678")
    assert sms.user_data == "42"
    assert (sms.encoding, sms.nature, sms.network) == ("gsm", "alerting", "20801")
    assert sms.cost == Decimal("4.50")
    assert sms.status is Status.REMOTE_QUEUED
    assert sms.provider_status == "REMOTE_QUEUED"
    assert sms.created_at == datetime(2026, 3, 2, 16, 56, 4, tzinfo=UTC)
    assert sms.sent_at == datetime(2026, 3, 2, 16, 56, 6, tzinfo=UTC)
    assert sms.delivered_at is None  # "0000-00-00 00:00:00" means not set
    assert sms.error is None
    # History times carry milliseconds in v1; they are kept to the second.
    assert [(t.before, t.after, t.at.second, t.at.microsecond) for t in sms.history] == [
        (Status.CREATED, Status.PENDING, 4, 0),
        (Status.PENDING, Status.SENT, 6, 0),
        (Status.SENT, Status.REMOTE_QUEUED, 7, 0),
    ]
    assert sms.status_at == datetime(2026, 3, 2, 16, 56, 7, tzinfo=UTC)


def test_a_v2_inbound_message_becomes_a_snapshot() -> None:
    sms = snapshot(example("v2.sms.inbound.received"))
    assert sms.sms_id == "in7fk2qa"
    assert sms.direction == "inbound"
    assert sms.text == "Yes, confirm my booking"
    assert sms.user_data is None
    assert sms.status is Status.DELIVERED
    assert sms.sent_at is None
    assert sms.delivered_at == datetime(2025, 4, 7, 13, 31, 1, tzinfo=UTC)


def test_a_v1_mo_is_inbound_and_its_empty_user_data_is_none() -> None:
    sms = snapshot(example("v1-sms.mo"))
    assert sms.direction == "inbound"
    assert sms.user_data is None
    assert sms.status is Status.DELIVERED
    assert sms.provider_status == "RECEIVED"


def test_v1_hash_and_v2_sid_name_the_same_sms_in_lower_case() -> None:
    assert snapshot(changed("v1-sms.mt.status_update", hash="AbCd1234")).sms_id == "abcd1234"
    assert snapshot(changed("v2.sms.outbound.updated", sid="ABCD1234")).sms_id == "abcd1234"


def test_an_unknown_status_is_kept_raw() -> None:
    sms = snapshot(changed("v1-sms.mt.status_update", status="BOUNCED"))
    assert sms.status is Status.UNKNOWN
    assert sms.provider_status == "BOUNCED"


def test_without_history_the_status_time_is_the_update_time() -> None:
    sms = snapshot(changed("v2.sms.outbound.updated", statusHistory=[]))
    assert sms.status_at == datetime(2024, 4, 24, 17, 42, 28, tzinfo=UTC)
    assert sms.history == ()


def test_a_v1_date_is_utc_and_a_status_time_is_to_the_second() -> None:
    sms = snapshot(
        changed(
            "v1-sms.mt.status_update",
            date_sent="2024-04-24 17:42:28.750",
            date_update="2024-04-24 17:42:29.250",
            status_history=[],
        )
    )
    assert sms.sent_at == datetime(2024, 4, 24, 17, 42, 28, 750000, tzinfo=UTC)
    assert sms.status_at == datetime(2024, 4, 24, 17, 42, 29, tzinfo=UTC)


def test_a_v2_null_time_is_none() -> None:
    assert snapshot(changed("v2.sms.outbound.updated", delivered=None)).delivered_at is None


@pytest.mark.parametrize(
    ("name", "fields", "reason"),
    [
        ("v1-sms.mt.status_update", {"hash": None}, "data.hash is missing"),
        ("v1-sms.mt.status_update", {"hash": 42}, "data.hash must be a string"),
        ("v1-sms.mt.status_update", {"status": None}, "data.status is missing"),
        ("v1-sms.mt.status_update", {"parts": "one"}, "data.parts must be an integer"),
        ("v1-sms.mt.status_update", {"b_customer_debit": "lots"}, "data.b_customer_debit must"),
        ("v1-sms.mt.status_update", {"date_sent": "yesterday"}, "data.date_sent is not a"),
        # A v1 date is UTC without a zone: one that names a zone is not CALLR's format.
        ("v1-sms.mt.status_update", {"date_sent": "2024-04-24 17:42:28+02:00"}, "data.date_sent"),
        ("v1-sms.mt.status_update", {"date_sent": "2024-04-24 17:42:28.5Z"}, "data.date_sent"),
        ("v1-sms.mt.status_update", {"text": "a\x00b"}, "data.text contains a NUL character"),
        ("v1-sms.mt.status_update", {"status_history": {}}, "data.status_history must be a list"),
        (
            "v1-sms.mt.status_update",
            {"status_history": [{"old_status": "SENT", "new_status": "RECEIVED"}]},
            "data.status_history[0].updated_at is missing",
        ),
        ("v2.sms.outbound.updated", {"sent": "2024-04-24T17:42:28"}, "payload.sent has no time"),
        ("v2.sms.outbound.updated", {"statusHistory": [7]}, "payload.statusHistory[0] must be"),
        ("v2.sms.outbound.updated", {"body": "text"}, "payload.body must be an object"),
        # Found by tests/reliability: the database's check constraint refused it.
        ("v2.sms.outbound.updated", {"direction": "sideways"}, "payload.direction must be"),
        ("v2.sms.inbound.received", {"direction": "outbound"}, "payload.direction must be"),
    ],
)
def test_a_bad_field_makes_the_event_invalid_with_its_name(
    name: str, fields: dict[str, Any], reason: str
) -> None:
    parsed = parse_envelope(changed(name, **fields))
    assert isinstance(parsed, Malformed)
    assert parsed.reason.startswith(reason)
    assert not parsed.key.startswith("sha256:")  # kept under its event id


def test_a_handled_event_without_an_object_is_invalid() -> None:
    with pytest.raises(SmsInvalid, match="data must be an object"):
        parse_sms("sms.mo", None, generation=1)


BOUNDED = [
    ("v1-sms.mo", "user_data", MAX_USER_DATA, "data.user_data"),
    ("v1-sms.mo", "from", MAX_NUMBER, "data.from"),
    ("v1-sms.mo", "to", MAX_NUMBER, "data.to"),
    ("v1-sms.mo", "text", MAX_TEXT, "data.text"),
    ("v1-sms.mt.status_update", "network", MAX_NETWORK, "data.network"),
    ("v1-sms.mt.status_update", "status_error", MAX_ERROR, "data.status_error"),
    ("v1-sms.mt.status_update", "encoding", MAX_STATUS, "data.encoding"),
    ("v2.sms.outbound.updated", "user_data", MAX_USER_DATA, "payload.user_data"),
    ("v2.sms.outbound.updated", "error", MAX_ERROR, "payload.error"),
    ("v2.sms.outbound.updated", "trafficType", MAX_STATUS, "payload.trafficType"),
    ("v2.sms.inbound.received", "network", MAX_NETWORK, "payload.network"),
]


@pytest.mark.parametrize(("example_name", "field", "bound", "path"), BOUNDED)
def test_every_projected_field_is_taken_up_to_its_bound_and_no_further(
    example_name: str, field: str, bound: int, path: str
) -> None:
    at_bound = snapshot(changed(example_name, **{field: "é" * bound}))
    assert "é" * bound in at_bound
    over = parse_envelope(changed(example_name, **{field: "é" * (bound + 1)}))
    assert isinstance(over, Malformed)
    assert over.reason == f"{path} is longer than {bound} characters"


def test_a_status_longer_than_its_bound_makes_the_event_invalid() -> None:
    over = parse_envelope(changed("v2.sms.outbound.updated", status="x" * (MAX_STATUS + 1)))
    assert isinstance(over, Malformed)
    assert over.reason == f"payload.status is longer than {MAX_STATUS} characters"


def test_a_history_longer_than_its_bound_makes_the_event_invalid() -> None:
    step = {"before": "created", "after": "sent", "at": "2026-03-02T16:56:04Z"}
    over = parse_envelope(changed("v2.sms.outbound.updated", statusHistory=[step] * 101))
    assert isinstance(over, Malformed)
    assert over.reason == "payload.statusHistory has more than 100 entries"
    assert snapshot(changed("v2.sms.outbound.updated", statusHistory=[step] * 100))


@pytest.mark.parametrize(
    ("cost", "reason"),
    [
        ("1E-20000", "payload.cost has more than 12 decimal places"),
        ("0.0000000000001", "payload.cost has more than 12 decimal places"),
        ("1E12", "payload.cost is out of range"),
    ],
)
def test_a_cost_the_database_could_not_hold_makes_the_event_invalid(cost: str, reason: str) -> None:
    over = parse_envelope(changed("v2.sms.outbound.updated", cost=cost))
    assert isinstance(over, Malformed)
    assert over.reason == reason
    assert snapshot(
        changed("v2.sms.outbound.updated", cost="0.000000000001")
    ).cost_cents == Decimal("1E-12")
