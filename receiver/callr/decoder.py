"""The common case of an SMS object, checked in one call by msgspec.

`receiver.callr.sms` is the reference: it reads the JSON field by field and names
the field that is wrong. Every webhook pays for that reading, though nearly every
one is well formed. Here the same bounds and types are written as msgspec
structures, checked in C on the document orjson read (`msgspec.convert`: no second
parse); what is left in Python is what the structures cannot say (dates, amounts,
statuses, the SMS id's case). Whenever this decoder has any doubt it answers None,
and the reference parser decides (and words the error): the two agree on every
input, which tests/callr/test_decoder.py checks on mutations of every kind of event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from receiver.callr.sms import (
    INBOUND_TYPES,
    MAX_DATE,
    MAX_ERROR,
    MAX_HISTORY,
    MAX_NETWORK,
    MAX_NUMBER,
    MAX_SMS_ID_LENGTH,
    MAX_STATUS,
    MAX_TEXT,
    MAX_USER_DATA,
    Snapshot,
    Transition,
    amount,
    map_status,
    rfc3339_time,
    status_time,
    to_second,
    v1_time,
)

_Required = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STATUS)]
_SmsId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SMS_ID_LENGTH)]
_Number = Annotated[str, msgspec.Meta(max_length=MAX_NUMBER)] | None
_Short = Annotated[str, msgspec.Meta(max_length=MAX_STATUS)] | None
_Date = Annotated[str, msgspec.Meta(max_length=MAX_DATE)] | None
_Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] | None
_UserData = Annotated[str, msgspec.Meta(max_length=MAX_USER_DATA)] | None
_Network = Annotated[str, msgspec.Meta(max_length=MAX_NETWORK)] | None
_Error = Annotated[str, msgspec.Meta(max_length=MAX_ERROR)] | None
_Parts = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] | None
_Amount = str | int | float | None


class _V1Step(msgspec.Struct):
    old_status: _Required
    new_status: _Required
    updated_at: _Date = None


class _V1(msgspec.Struct):
    """`data` of a v1 event."""

    hash: _SmsId
    status: _Required
    from_: _Number = msgspec.field(default=None, name="from")
    to: _Number = None
    text: _Text = None
    user_data: _UserData = None
    encoding: _Short = None
    parts: _Parts = None
    b_customer_debit: _Amount = None
    network: _Network = None
    nature: _Short = None
    status_error: _Error = None
    date_creation: _Date = None
    date_sent: _Date = None
    date_received: _Date = None
    date_update: _Date = None
    status_history: Annotated[list[_V1Step], msgspec.Meta(max_length=MAX_HISTORY)] | None = None


class _V2Step(msgspec.Struct):
    before: _Required
    after: _Required
    at: _Date = None


class _V2Body(msgspec.Struct):
    text: _Text = None


class _V2(msgspec.Struct, rename={"traffic": "trafficType", "history": "statusHistory"}):
    """`payload` of a v2 event."""

    sid: _SmsId
    status: _Required
    direction: _Short = None
    from_: _Number = msgspec.field(default=None, name="from")
    to: _Number = None
    body: _V2Body | None = None
    user_data: _UserData = None
    encoding: _Short = None
    parts: _Parts = None
    cost: _Amount = None
    network: _Network = None
    traffic: _Short = None
    error: _Error = None
    created: _Date = None
    sent: _Date = None
    delivered: _Date = None
    updated: _Date = None
    history: Annotated[list[_V2Step], msgspec.Meta(max_length=MAX_HISTORY)] | None = None


def decode_sms(event_type: str, obj: Any, *, generation: int) -> Snapshot | None:
    """The snapshot of a handled event's SMS object (as orjson read it); None when the
    reference parser must decide. Its strings hold no NUL (the caller checks)."""
    try:
        if generation == 1:
            return _v1(event_type, msgspec.convert(obj, _V1))
        return _v2(event_type, msgspec.convert(obj, _V2))
    except ValueError:  # msgspec.ValidationError too
        return None


def _v1(event_type: str, data: _V1) -> Snapshot | None:
    sms_id = _sms_id(data.hash)
    if sms_id is None:
        return None
    status = map_status(data.status, generation=1)
    entries = ((s.old_status, s.new_status, s.updated_at) for s in data.status_history or ())
    steps = _history(entries, 1, v1_time)
    if steps is None:
        return None
    return Snapshot(
        sms_id=sms_id,
        direction="inbound" if event_type in INBOUND_TYPES else "outbound",
        from_number=data.from_ or None,
        to_number=data.to or None,
        text=data.text,
        user_data=data.user_data or None,
        encoding=data.encoding.lower() if data.encoding else None,
        parts=data.parts,
        cost=_amount(data.b_customer_debit),
        cost_cents=None,
        network=data.network or None,
        nature=data.nature.lower() if data.nature else None,
        error=data.status_error or None,
        created_at=v1_time(data.date_creation or None),
        sent_at=v1_time(data.date_sent or None),
        delivered_at=v1_time(data.date_received or None),
        status=status,
        provider_status=data.status,
        status_at=status_time(status, steps, v1_time(data.date_update or None)),
        history=steps,
    )


def _v2(event_type: str, payload: _V2) -> Snapshot | None:
    sms_id = _sms_id(payload.sid)
    if sms_id is None:
        return None
    implied = "inbound" if event_type in INBOUND_TYPES else "outbound"
    direction = (payload.direction or implied).lower()
    if direction != implied:
        return None
    status = map_status(payload.status, generation=2)
    steps = _history(((s.before, s.after, s.at) for s in payload.history or ()), 2, rfc3339_time)
    if steps is None:
        return None
    return Snapshot(
        sms_id=sms_id,
        direction=direction,
        from_number=payload.from_ or None,
        to_number=payload.to or None,
        text=payload.body.text if payload.body is not None else None,
        user_data=payload.user_data or None,
        encoding=payload.encoding.lower() if payload.encoding else None,
        parts=payload.parts,
        cost=None,
        cost_cents=_amount(payload.cost),
        network=payload.network or None,
        nature=payload.traffic.lower() if payload.traffic else None,
        error=payload.error or None,
        created_at=rfc3339_time(payload.created or None),
        sent_at=rfc3339_time(payload.sent or None),
        delivered_at=rfc3339_time(payload.delivered or None),
        status=status,
        provider_status=payload.status,
        status_at=status_time(status, steps, rfc3339_time(payload.updated or None)),
        history=steps,
    )


def _history(
    entries: Iterable[tuple[str, str, str | None]],
    generation: int,
    read_time: Callable[[str | None], datetime | None],
) -> tuple[Transition, ...] | None:
    """The steps (before, after, time as written); None when a time is missing."""
    steps = []
    for before, after, written in entries:
        at = read_time(written or None)
        if at is None:
            return None
        steps.append(
            Transition(
                before=map_status(before, generation=generation),
                after=map_status(after, generation=generation),
                at=to_second(at),
            )
        )
    return tuple(steps)


def _sms_id(value: str) -> str | None:
    sms_id = value.strip().lower()
    return sms_id if sms_id and len(sms_id) <= MAX_SMS_ID_LENGTH else None


def _amount(value: str | int | float | None) -> Decimal | None:
    return None if value is None or value == "" else amount(value)
