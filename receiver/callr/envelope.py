"""The envelope of a CALLR webhook event, v1 and v2, parsed from the raw body.

A pure function of the bytes: it decides what the event is called, which try this
is, and whether the body is something the receiver understands at all. It never
raises on bad input; a body it cannot understand comes back as `Malformed` with
the reason, so that the caller can still store it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NamedTuple

import msgspec
import orjson

from receiver.callr.decoder import decode_sms
from receiver.callr.sends import SendStep
from receiver.callr.sms import RANGE_TEXT, OutOfRange, SmsInvalid, Snapshot, in_range, parse_sms

HANDLED_TYPES = frozenset(
    {"sms.mt.status_update", "sms.mo", "v2.sms.outbound.updated", "v2.sms.inbound.received"}
)

MAX_ID_LENGTH = 256
# How deep a body may nest and still be fingerprinted (orjson writes at most this).
MAX_DEPTH = 254
MAX_ATTEMPT = 2**31 - 1

# The receiver's own events (receiver.callr.own) are told apart by where they were
# stored (`events.own`, set only by the code that makes them), never by a body: a
# webhook that takes one of their types or id forms is refused, and kept under the
# hash of its bytes, so that it can never take the id of a real one.
OWN_TYPE_PREFIXES = ("receiver.", "callr.api.")
OWN_ID_PREFIXES = ("send:", "registration:", "callr-api:")


def impersonation(event_id: str | None, event_type: str | None, id_field: str = "id") -> str | None:
    """Why a webhook's id or type is refused: one the receiver keeps for its own events.

    `id_field` names the id in the message (`event_id` in v1, `id` in v2).
    """
    if event_type is not None and event_type.startswith(OWN_TYPE_PREFIXES):
        return (
            f"field 'type' is {event_type[:64]!r}, a type of the receiver's own events:"
            " CALLR never sends it"
        )
    if event_id is not None and event_id.startswith(OWN_ID_PREFIXES):
        return (
            f"field '{id_field}' is {event_id[:64]!r}, an id form of the receiver's own events:"
            " CALLR never sends it"
        )
    return None


# Named tuples, like the SMS snapshot: made for every webhook, and cheaper to make
# than frozen dataclasses.
class Envelope(NamedTuple):
    """A well-formed event: its identity, its try, and the SMS object it carries."""

    event_id: str
    type: str
    attempt: int
    emitted_at: datetime | None
    subscription: str | None
    generation: int
    object: Any
    fingerprint: bytes
    sms: Snapshot | None = None
    """The SMS the event reports, for the handled types."""
    send: SendStep | None = None
    """A step of a send through the receiver (receiver.callr.sends)."""

    @property
    def handled(self) -> bool:
        """True for the events this service acts on: those that report an SMS.

        The SMS webhook types (their SMS is parsed, or the event is malformed), and the
        receiver's own events (receiver.callr.own).
        """
        return self.sms is not None or self.send is not None


class Malformed(NamedTuple):
    """A body that is not a CALLR event the receiver understands, and why."""

    key: str
    reason: str
    type: str | None
    attempt: int | None
    subscription: str | None
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class _Fields:
    id: str
    emitted_at: str
    subscription: str
    object: str


_V1 = _Fields(id="event_id", emitted_at="event_at", subscription="hook_hash", object="data")
_V2 = _Fields(id="id", emitted_at="at", subscription="sid", object="payload")


class _Invalid(ValueError):
    pass


def parse_envelope(body: bytes, *, fingerprint: bool = True) -> Envelope | Malformed:
    """Parse a webhook body into an `Envelope`, or say in a `Malformed` what is wrong with it.

    `fingerprint=False` leaves an envelope's content fingerprint empty (`b""`): it only
    tells deliveries apart, and a replay, which stores none, skips its cost.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return _malformed(body, f"body is not valid JSON: {error}")
    if not isinstance(document, dict):
        return _malformed(body, f"body is a JSON {_json_kind(document)}, not an object")
    fields = _V1 if "event_id" in document else _V2
    if not fingerprint and not _writable(document):
        # What ingest refuses (it writes the body again for the fingerprint), a replay,
        # which skips the fingerprint, refuses too.
        return _malformed(body, f"body is nested more than {MAX_DEPTH} levels deep")
    # An escaped NUL anywhere: a field may hold one, which only the reference says.
    if b"\\u0000" not in body:
        decoded = _decoded(document, fields, fingerprint=fingerprint)
        if decoded is not None:
            return _not_own(body, decoded, fields)
    try:
        return _not_own(body, _envelope(document, fields, fingerprint=fingerprint), fields)
    except _Invalid as error:
        return _malformed_document(body, document, fields, str(error))
    except orjson.JSONEncodeError:
        # Read (orjson reads 1,024 levels) but too deep to write again for the
        # fingerprint (254): no CALLR event comes near either.
        return _malformed(body, f"body is nested more than {MAX_DEPTH} levels deep")
    except SmsInvalid as error:
        # A well-formed envelope around an SMS object that is not understood:
        # kept under its event id, with the field named.
        try:
            content = content_fingerprint(document, fields.subscription)
        except orjson.JSONEncodeError:
            return _malformed(body, f"body is nested more than {MAX_DEPTH} levels deep")
        refused = impersonation(document[fields.id], document["type"], fields.id)
        if refused is not None:
            return _malformed(body, refused)._replace(type=document["type"])
        return Malformed(
            key=document[fields.id],
            reason=str(error),
            type=document["type"],
            attempt=document["try"],
            subscription=document.get(fields.subscription),
            fingerprint=content,
        )


_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
_Attempt = Annotated[int, msgspec.Meta(ge=0, le=MAX_ATTEMPT)]


class _V1Event(msgspec.Struct, rename={"attempt": "try"}):
    event_id: _Id
    type: _Id
    attempt: _Attempt
    hook_hash: _Id | None = None


class _V2Event(msgspec.Struct, rename={"attempt": "try"}):
    id: _Id
    type: _Id
    attempt: _Attempt
    sid: _Id | None = None


def _decoded(document: dict[str, object], fields: _Fields, *, fingerprint: bool) -> Envelope | None:
    """The envelope of a well-formed event, its fields checked by msgspec in one call
    (receiver.callr.decoder); None when `_envelope`, the reference, must decide."""
    try:
        if fields is _V1:
            v1 = msgspec.convert(document, _V1Event)
            event_id, event_type, attempt, generation = v1.event_id, v1.type, v1.attempt, 1
            subscription = v1.hook_hash
        else:
            v2 = msgspec.convert(document, _V2Event)
            event_id, event_type, attempt, generation = v2.id, v2.type, v2.attempt, 2
            subscription = v2.sid
        obj = document.get(fields.object)
        sms = None
        if event_type in HANDLED_TYPES:
            sms = decode_sms(event_type, obj, generation=generation)
            if sms is None:
                return None
        return Envelope(
            event_id=event_id,
            type=event_type,
            attempt=attempt,
            emitted_at=_timestamp(document, fields.emitted_at),
            subscription=subscription,
            generation=generation,
            object=obj,
            fingerprint=content_fingerprint(document, fields.subscription) if fingerprint else b"",
            sms=sms,
        )
    except (msgspec.ValidationError, _Invalid, orjson.JSONEncodeError):
        return None


def _envelope(document: dict[str, object], fields: _Fields, *, fingerprint: bool) -> Envelope:
    event_id = _text(document, fields.id, required=True)
    event_type = _text(document, "type", required=True)
    attempt = _attempt(document)
    assert event_id is not None
    assert event_type is not None
    generation = 1 if fields is _V1 else 2
    emitted_at = _timestamp(document, fields.emitted_at)
    subscription = _text(document, fields.subscription, required=False)
    obj = document.get(fields.object)
    sms = parse_sms(event_type, obj, generation=generation) if event_type in HANDLED_TYPES else None
    return Envelope(
        event_id=event_id,
        type=event_type,
        attempt=attempt,
        emitted_at=emitted_at,
        subscription=subscription,
        generation=generation,
        object=obj,
        fingerprint=content_fingerprint(document, fields.subscription) if fingerprint else b"",
        sms=sms,
    )


def _writable(document: Any) -> bool:
    """Whether orjson can write `document` again (it writes at most `MAX_DEPTH` levels)."""
    try:
        orjson.dumps(document)
    except orjson.JSONEncodeError:
        return False
    return True


def content_fingerprint(document: dict[str, object], subscription_field: str) -> bytes:
    """sha256 of the event without `try` and the subscription id.

    Two deliveries of one event differ only in those two fields: a retry raises
    `try`, and a second subscription (global + dynamic webhook) has its own id.
    Anything else that differs is a conflict.
    """
    content = {k: v for k, v in document.items() if k not in ("try", subscription_field)}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).digest()


def _not_own(body: bytes, envelope: Envelope, fields: _Fields) -> Envelope | Malformed:
    if not (
        envelope.type.startswith(OWN_TYPE_PREFIXES) or envelope.event_id.startswith(OWN_ID_PREFIXES)
    ):
        return envelope  # every webhook from CALLR: two prefix checks, nothing more
    refused = impersonation(envelope.event_id, envelope.type, fields.id)
    if refused is None:
        return envelope
    return _malformed(body, refused)._replace(type=envelope.type[:MAX_ID_LENGTH])


def _malformed(body: bytes, reason: str) -> Malformed:
    digest = hashlib.sha256(body).digest()
    return Malformed(
        key=f"sha256:{digest.hex()}",
        reason=reason,
        type=None,
        attempt=None,
        subscription=None,
        fingerprint=digest,
    )


def _malformed_document(
    body: bytes, document: dict[str, object], fields: _Fields, reason: str
) -> Malformed:
    """A JSON object that is not a valid event: keep what can be trusted of it.

    When it carries a usable id it is keyed by that id, so that its retries are
    recognised; otherwise by the hash of its bytes.
    """
    digest = hashlib.sha256(body).digest()
    event_id = _lenient_text(document, fields.id)
    refused = impersonation(event_id, _lenient_text(document, "type"), fields.id)
    if refused is not None:
        return _malformed(body, f"{refused}; and {reason}")
    if event_id is not None:
        try:
            fingerprint = content_fingerprint(document, fields.subscription)
        except orjson.JSONEncodeError:
            return _malformed(body, f"{reason}; and the body is nested more than {MAX_DEPTH} deep")
    return Malformed(
        key=event_id or f"sha256:{digest.hex()}",
        reason=reason,
        type=_lenient_text(document, "type"),
        attempt=_lenient_attempt(document),
        subscription=_lenient_text(document, fields.subscription),
        fingerprint=fingerprint if event_id is not None else digest,
    )


def _lenient_text(document: dict[str, object], name: str) -> str | None:
    try:
        return _text(document, name, required=False)
    except _Invalid:
        return None


def _lenient_attempt(document: dict[str, object]) -> int | None:
    try:
        return _attempt(document)
    except _Invalid:
        return None


def _text(document: dict[str, object], name: str, *, required: bool) -> str | None:
    value = document.get(name)
    if value is None:
        if required:
            raise _Invalid(f"field '{name}' is missing")
        return None
    if not isinstance(value, str):
        raise _Invalid(f"field '{name}' must be a string, not a JSON {_json_kind(value)}")
    if not value or len(value) > MAX_ID_LENGTH or "\x00" in value:
        raise _Invalid(f"field '{name}' must be 1 to {MAX_ID_LENGTH} characters, without NUL")
    return value


def _attempt(document: dict[str, object]) -> int:
    value = document.get("try")
    if value is None:
        raise _Invalid("field 'try' is missing")
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(f"field 'try' must be an integer, not a JSON {_json_kind(value)}")
    if not 0 <= value <= MAX_ATTEMPT:
        raise _Invalid(f"field 'try' must be between 0 and {MAX_ATTEMPT}")
    return value


def _timestamp(document: dict[str, object], name: str) -> datetime | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"field '{name}' must be an ISO 8601 string, not a JSON {_json_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(f"field '{name}' is not an ISO 8601 time: {value[:64]!r}") from None
    if parsed.tzinfo is None:
        raise _Invalid(f"field '{name}' has no time zone: {value[:64]!r}")
    try:
        return in_range(parsed)
    except OutOfRange:
        raise _Invalid(f"field '{name}' is {RANGE_TEXT}: {value[:64]!r}") from None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
