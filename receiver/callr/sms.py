"""The SMS object inside an event, v1 (`data`) and v2 (`payload`), as one `Snapshot`.

Pure: statuses mapped to the v2 vocabulary, dates to aware UTC datetimes, ids to
lower case (a v1 `hash` and a v2 `sid` name the same SMS). A field of the wrong
type raises `SmsInvalid` with a reason that names it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from receiver.status import Status

_V1_STATUSES = {
    "CREATED": Status.CREATED,
    "PENDING": Status.PENDING,
    "SENT": Status.SENT,
    "REMOTE_QUEUED": Status.REMOTE_QUEUED,
    "RECEIVED": Status.DELIVERED,
    "DELIVERED": Status.DELIVERED,  # undocumented, harmless as a synonym of success
    "ERROR": Status.ERROR,
    "FAILED": Status.FAILED,
    "EXPIRED": Status.EXPIRED,
}
_V2_STATUSES = {status.value: status for status in Status if status is not Status.UNKNOWN}

INBOUND_TYPES = frozenset({"sms.mo", "v2.sms.inbound.received"})
# The name a v1 event gives each status, the documented one where there are two
# (what `receiver simulate` sends).
V1_NAMES: dict[Status, str] = {}
for _name, _status in _V1_STATUSES.items():
    V1_NAMES.setdefault(_status, _name)
_V1_NO_DATE = "0000-00-00 00:00:00"
_MAX_AMOUNT = Decimal(10) ** 12
_MAX_DECIMALS = 12

# The most, in characters, that the parser takes of each field it projects:
# generous for anything CALLR sends, and small enough that no value can make the
# database refuse a row (an index row holds at most 2,704 bytes; a character takes
# up to 4). A field over its bound makes the event invalid, with the field named.
MAX_SMS_ID_LENGTH = 64
MAX_NUMBER = 64
"""A phone number (E.164 has at most 15 digits) or an alphanumeric sender (11)."""
MAX_USER_DATA = 255
MAX_NETWORK = 128
MAX_STATUS = 64
"""A status string, and the encoding and nature."""
MAX_ERROR = 1000
MAX_TEXT = 40_000
"""An SMS's text: CALLR sends at most 3,200 characters; a long MO arrives in up to 255
parts of 153 characters."""
MAX_HISTORY = 100
"""Steps in one event's status history (an SMS goes through about five)."""
MAX_DATE = 64


class SmsInvalid(ValueError):
    """The SMS object of a handled event cannot be understood; the message says which field."""


def map_status(raw: str, *, generation: int) -> Status:
    """The v2 status for a provider string; `UNKNOWN` for one this service does not know."""
    table = _V1_STATUSES if generation == 1 else _V2_STATUSES
    status = table.get(raw)  # as CALLR writes it, nearly always
    if status is not None:
        return status
    return table.get(
        raw.strip().upper() if generation == 1 else raw.strip().lower(), Status.UNKNOWN
    )


# Named tuples rather than frozen dataclasses: every webhook makes them, and a frozen
# dataclass's constructor costs three times as much (3.8 against 1.3 us for 19 fields).
class Transition(NamedTuple):
    """One step of the status history, as the provider reported it (times to the second)."""

    before: Status
    after: Status
    at: datetime


class Snapshot(NamedTuple):
    """What one event says about one SMS."""

    sms_id: str
    direction: str
    from_number: str | None
    to_number: str | None
    text: str | None
    user_data: str | None
    encoding: str | None
    parts: int | None
    cost: Decimal | None
    """v1's `b_customer_debit`, as CALLR gives it (its unit is not documented)."""
    cost_cents: Decimal | None
    """v2's `cost`, in cents as CALLR documents it."""
    network: str | None
    nature: str | None
    error: str | None
    created_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    status: Status
    provider_status: str
    status_at: datetime | None
    history: tuple[Transition, ...]


def parse_sms(event_type: str, obj: Any, *, generation: int) -> Snapshot:
    """The snapshot carried by a handled event; raises `SmsInvalid` naming the bad field."""
    if generation == 1:
        return _parse_v1(event_type, _Fields(obj, "data"))
    return _parse_v2(event_type, _Fields(obj, "payload"))


def _parse_v1(event_type: str, f: _Fields) -> Snapshot:
    raw_status = f.required_text("status")
    status = map_status(raw_status, generation=1)
    history = tuple(
        Transition(
            before=map_status(h.required_text("old_status"), generation=1),
            after=map_status(h.required_text("new_status"), generation=1),
            at=h.required_time("updated_at", h.v1_date("updated_at")),
        )
        for h in f.entries("status_history")
    )
    return Snapshot(
        sms_id=f.sms_id("hash"),
        direction="inbound" if event_type in INBOUND_TYPES else "outbound",
        from_number=f.text("from", limit=MAX_NUMBER),
        to_number=f.text("to", limit=MAX_NUMBER),
        text=f.text("text", limit=MAX_TEXT, keep_empty=True),
        user_data=f.text("user_data", limit=MAX_USER_DATA),
        encoding=_lower(f.text("encoding", limit=MAX_STATUS)),
        parts=f.integer("parts"),
        cost=f.decimal("b_customer_debit"),
        cost_cents=None,
        network=f.text("network", limit=MAX_NETWORK),
        nature=_lower(f.text("nature", limit=MAX_STATUS)),
        error=f.text("status_error", limit=MAX_ERROR),
        created_at=f.v1_date("date_creation"),
        sent_at=f.v1_date("date_sent"),
        delivered_at=f.v1_date("date_received"),
        status=status,
        provider_status=raw_status,
        status_at=status_time(status, history, f.v1_date("date_update")),
        history=history,
    )


def _parse_v2(event_type: str, f: _Fields) -> Snapshot:
    raw_status = f.required_text("status")
    status = map_status(raw_status, generation=2)
    history = tuple(
        Transition(
            before=map_status(h.required_text("before"), generation=2),
            after=map_status(h.required_text("after"), generation=2),
            at=h.required_time("at", h.rfc3339("at")),
        )
        for h in f.entries("statusHistory")
    )
    body = f.object("body")
    text = body.text("text", limit=MAX_TEXT, keep_empty=True) if body is not None else None
    implied = "inbound" if event_type in INBOUND_TYPES else "outbound"
    direction = (f.text("direction", limit=MAX_STATUS) or implied).lower()
    if direction != implied:
        raise SmsInvalid(f"{f.name('direction')} must be {implied!r} in a {event_type} event")
    return Snapshot(
        sms_id=f.sms_id("sid"),
        direction=direction,
        from_number=f.text("from", limit=MAX_NUMBER),
        to_number=f.text("to", limit=MAX_NUMBER),
        text=text,
        user_data=f.text("user_data", limit=MAX_USER_DATA),
        encoding=_lower(f.text("encoding", limit=MAX_STATUS)),
        parts=f.integer("parts"),
        cost=None,
        cost_cents=f.decimal("cost"),
        network=f.text("network", limit=MAX_NETWORK),
        nature=_lower(f.text("trafficType", limit=MAX_STATUS)),
        error=f.text("error", limit=MAX_ERROR),
        created_at=f.rfc3339("created"),
        sent_at=f.rfc3339("sent"),
        delivered_at=f.rfc3339("delivered"),
        status=status,
        provider_status=raw_status,
        status_at=status_time(status, history, f.rfc3339("updated")),
        history=history,
    )


def status_time(
    status: Status, history: tuple[Transition, ...], updated: datetime | None
) -> datetime | None:
    """When the SMS reached its current status: from its history when it shows the step."""
    reached = [step.at for step in history if step.after is status]
    if reached:
        return max(reached)
    return to_second(updated) if updated else None


class _Fields:
    """Typed access to one JSON object's fields, with errors that name them.

    On the hot path of every webhook: exact type checks (orjson makes exact types)
    and field paths that are only spelled out when there is an error to report.
    """

    __slots__ = ("_index", "_obj", "_parent")

    def __init__(self, obj: Any, parent: str, index: int | None = None) -> None:
        if type(obj) is not dict:
            raise SmsInvalid(f"{_path(parent, index)} must be an object")
        self._obj: dict[str, object] = obj
        self._parent = parent
        self._index = index

    def name(self, field: str) -> str:
        return f"{_path(self._parent, self._index)}.{field}"

    def text(self, field: str, *, limit: int, keep_empty: bool = False) -> str | None:
        value = self._obj.get(field)
        if value is None:
            return None
        if type(value) is not str:
            raise SmsInvalid(f"{self.name(field)} must be a string")
        if len(value) > limit:
            raise SmsInvalid(f"{self.name(field)} is longer than {limit} characters")
        if "\x00" in value:
            raise SmsInvalid(f"{self.name(field)} contains a NUL character")
        return value if value or keep_empty else None

    def required_text(self, field: str, *, limit: int = MAX_STATUS) -> str:
        value = self.text(field, limit=limit)
        if value is None:
            raise SmsInvalid(f"{self.name(field)} is missing")
        return value

    def required_time(self, field: str, value: datetime | None) -> datetime:
        """`value` (the field, parsed) to the second; an error naming the field if absent."""
        if value is None:
            raise SmsInvalid(f"{self.name(field)} is missing")
        return to_second(value)

    def sms_id(self, field: str) -> str:
        value = self.required_text(field, limit=MAX_SMS_ID_LENGTH).strip().lower()
        if not value or len(value) > MAX_SMS_ID_LENGTH:
            raise SmsInvalid(f"{self.name(field)} must be 1 to {MAX_SMS_ID_LENGTH} characters")
        return value

    def integer(self, field: str) -> int | None:
        value = self._obj.get(field)
        if value is None:
            return None
        if type(value) is not int:
            raise SmsInvalid(f"{self.name(field)} must be an integer")
        if not 0 <= value <= 2**31 - 1:
            raise SmsInvalid(f"{self.name(field)} is out of range")
        return value

    def decimal(self, field: str) -> Decimal | None:
        value = self._obj.get(field)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise SmsInvalid(f"{self.name(field)} must be a decimal string")
        try:
            return amount(value)
        except _Unreadable as error:
            raise SmsInvalid(f"{self.name(field)} {error}") from None

    def v1_date(self, field: str) -> datetime | None:
        value = self.text(field, limit=MAX_DATE)
        try:
            return v1_time(value)
        except OutOfRange:
            raise SmsInvalid(f"{self.name(field)} is {RANGE_TEXT}") from None
        except ValueError:
            raise SmsInvalid(f"{self.name(field)} is not a 'YYYY-MM-DD HH:MM:SS' date") from None

    def rfc3339(self, field: str) -> datetime | None:
        value = self.text(field, limit=MAX_DATE)
        try:
            return rfc3339_time(value)
        except _NoZone:
            raise SmsInvalid(f"{self.name(field)} has no time zone") from None
        except OutOfRange:
            raise SmsInvalid(f"{self.name(field)} is {RANGE_TEXT}") from None
        except ValueError:
            raise SmsInvalid(f"{self.name(field)} is not an RFC 3339 time") from None

    def object(self, field: str) -> _Fields | None:
        value = self._obj.get(field)
        return None if value is None else _Fields(value, self.name(field))

    def entries(self, field: str) -> list[_Fields]:
        value = self._obj.get(field)
        if value is None:
            return []
        if type(value) is not list:
            raise SmsInvalid(f"{self.name(field)} must be a list")
        if len(value) > MAX_HISTORY:
            raise SmsInvalid(f"{self.name(field)} has more than {MAX_HISTORY} entries")
        parent = self.name(field)
        return [_Fields(item, parent, n) for n, item in enumerate(value)]


class _Unreadable(ValueError):
    """Why a value cannot be read, worded to follow the field's name."""


class _NoZone(ValueError):
    pass


class OutOfRange(ValueError):
    """A time outside the years CALLR can write (`EARLIEST` to `LATEST`)."""


# Every time read from a body lies in these bounds (docs/webhooks.md): CALLR writes
# times of its own clock, and a time far from it (year 1, year 9999 in another zone)
# is a body to refuse, not one to store where every read of it would fail.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
RANGE_TEXT = "out of range: times from 2000-01-01 to 2099-12-31 (UTC) are read"
_FIRST_YEAR, _PAST_YEAR = EARLIEST.year, LATEST.year


def amount(value: str | int | float) -> Decimal:
    """A cost as CALLR writes it (a string, or a JSON number), checked against the bounds."""
    try:
        read = Decimal(str(value))
    except InvalidOperation:
        raise _Unreadable("must be a decimal string") from None
    if not read.is_finite() or abs(read) >= _MAX_AMOUNT:
        raise _Unreadable("is out of range")
    exponent = read.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_MAX_DECIMALS:
        raise _Unreadable(f"has more than {_MAX_DECIMALS} decimal places")
    return read


def v1_time(value: str | None) -> datetime | None:
    """A v1 date ('YYYY-MM-DD HH:MM:SS', UTC); None for none or CALLR's zero date.

    Raises ValueError for any other shape.
    """
    if value is None or value == _V1_NO_DATE:
        return None
    # fromisoformat is ten times faster than strptime; the shape check keeps the
    # field to CALLR's own format (a space, no zone).
    if len(value) < 19 or value[10] != " " or value[19:20] not in ("", "."):
        raise ValueError(value)
    # In UTC: the zone written out costs less than replace(tzinfo=...) after.
    parsed = datetime.fromisoformat(value + "+00:00")
    if not _FIRST_YEAR <= parsed.year < _PAST_YEAR:
        raise OutOfRange(value)
    return parsed


def rfc3339_time(value: str | None) -> datetime | None:
    """A v2 time, in UTC; raises ValueError when it is not one, or has no zone."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise _NoZone(value)
    return in_range(parsed)


def in_range(value: datetime) -> datetime:
    """An aware time in UTC, when it is one CALLR could write: from `EARLIEST` to
    `LATEST` (excluded). Raises `OutOfRange` otherwise, before any arithmetic that the
    far ends would overflow (year 1 or 9999 in another zone)."""
    year = value.year
    if value.tzinfo is UTC:  # the common case, and the bounds are whole years in UTC
        if _FIRST_YEAR <= year < _PAST_YEAR:
            return value
        raise OutOfRange(value.isoformat())
    if not _FIRST_YEAR - 1 <= year <= _PAST_YEAR:
        raise OutOfRange(value.isoformat())
    utc = value.astimezone(UTC)
    if not EARLIEST <= utc < LATEST:
        raise OutOfRange(value.isoformat())
    return utc


def to_second(value: datetime) -> datetime:
    return value.replace(microsecond=0) if value.microsecond else value


def _path(parent: str, index: int | None) -> str:
    return parent if index is None else f"{parent}[{index}]"


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None
