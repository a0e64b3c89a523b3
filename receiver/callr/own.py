"""Events the receiver makes itself: CALLR's API answers, and registered sends.

Everything that changes a message record is an event, so that `rebuild` gives the
same records as live. Beside CALLR's webhooks there are:

- `callr.api.sms`: an SMS object that CALLR's API returned (reconcile, backfill).
  The body is CALLR's bytes: the whole answer of `GET /sms/<hash>`, or one element of
  a `GET /sms` list. The id is `callr-api:<sms id>:<digest of the SMS object>`, so
  asking again when nothing changed finds the event already stored.
- `callr.api.sms.quiet`: the same, from a backfill run with `--no-forward`: an MO
  imported this way is never forwarded, not even by a later replay.
- `receiver.registration`: `PUT /api/v1/messages/{id}`, the receiver's own JSON; the
  id is `registration:<sms id>:<digest>`.
- `receiver.send`: a step of a send through the receiver (receiver.callr.sends); the
  id is `send:<send id>:<seq>`.

Each is read back into the `Envelope` of a v1 snapshot, so the projection treats it
like a webhook: history, status, anomaly.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson

from receiver.callr import sends
from receiver.callr.envelope import Envelope, Malformed, parse_envelope
from receiver.callr.sms import SmsInvalid, Snapshot, parse_sms
from receiver.status import Status

API_SMS = "callr.api.sms"
API_SMS_QUIET = "callr.api.sms.quiet"
REGISTRATION = "receiver.registration"
# The types whose inbound SMS are never forwarded.
QUIET_TYPES = frozenset({API_SMS_QUIET})
# Each own type and its id form: every one of them a form that a webhook may not
# take (receiver.callr.envelope's OWN_TYPE_PREFIXES and OWN_ID_PREFIXES; tested).
OWN_FORMS = {
    API_SMS: "callr-api:",
    API_SMS_QUIET: "callr-api:",
    REGISTRATION: "registration:",
    sends.SEND: sends.PREFIX,
}


def digest(obj: Any) -> bytes:
    """sha256 of a JSON value, keys sorted: equal for equal content, however it was written.

    Raises `SmsInvalid` for a value nested too deeply to write again.
    """
    try:
        return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).digest()
    except orjson.JSONEncodeError as error:
        raise SmsInvalid(f"the answer cannot be read: {error}") from None


def sms_object(document: Any) -> Any:
    """The SMS object in a stored API body: the answer's `data`, or the list element itself."""
    if isinstance(document, dict) and "data" in document and "hash" not in document:
        return document["data"]
    return document


def api_sms_event(body: bytes, *, quiet: bool = False) -> Envelope:
    """The event for an SMS object CALLR's API returned; raises `SmsInvalid` naming a bad field."""
    try:
        obj = sms_object(orjson.loads(body))
    except orjson.JSONDecodeError as error:
        raise SmsInvalid(f"the answer is not JSON: {error}") from None
    return _api_envelope(None, API_SMS_QUIET if quiet else API_SMS, obj)


def _api_envelope(event_id: str | None, event_type: str, obj: Any) -> Envelope:
    if not isinstance(obj, dict):
        raise SmsInvalid("the SMS must be an object")
    kind = obj.get("type")
    if kind not in ("IN", "OUT"):
        raise SmsInvalid("data.type must be 'IN' or 'OUT'")
    sms = parse_sms("sms.mo" if kind == "IN" else "sms.mt.status_update", obj, generation=1)
    fingerprint = digest(obj)
    return Envelope(
        event_id=event_id or f"callr-api:{sms.sms_id}:{fingerprint.hex()[:32]}",
        type=event_type,
        attempt=0,
        emitted_at=None,
        subscription=None,
        generation=1,
        object=obj,
        fingerprint=fingerprint,
        sms=sms,
    )


def registration_body(
    sms_id: str, user_data: str, to: str, sender: str | None, created_at: datetime
) -> bytes:
    """What a registration stores: its fields, as the API took them."""
    return orjson.dumps(
        {
            "sms_id": sms_id.lower(),
            "user_data": user_data,
            "to": to,
            "from": sender,
            "created_at": created_at.isoformat(),
        }
    )


def registration_event(body: bytes, event_id: str | None = None) -> Envelope:
    """A registered send as an outbound SMS `created` at its `created_at`."""
    document = orjson.loads(body)
    created_at = datetime.fromisoformat(document["created_at"]).replace(microsecond=0)
    sms_id = document["sms_id"]
    fingerprint = digest(document)
    sms = Snapshot(
        sms_id=sms_id,
        direction="outbound",
        from_number=document["from"],
        to_number=document["to"],
        text=None,
        user_data=document["user_data"],
        encoding=None,
        parts=None,
        cost=None,
        cost_cents=None,
        network=None,
        nature=None,
        error=None,
        created_at=created_at,
        sent_at=None,
        delivered_at=None,
        status=Status.CREATED,
        provider_status="registered",
        status_at=created_at,
        history=(),
    )
    return Envelope(
        event_id=event_id or f"registration:{sms_id}:{fingerprint.hex()[:32]}",
        type=REGISTRATION,
        attempt=0,
        emitted_at=None,
        subscription=None,
        generation=2,
        object=document,
        fingerprint=fingerprint,
        sms=sms,
    )


def send_event(body: bytes, event_id: str | None = None) -> Envelope:
    """A step of a send; an accepted one also reports its SMS, like a registration."""
    step, sms = sends.parse_step(body)
    return Envelope(
        event_id=event_id or sends.event_id(step.send_id, step.seq),
        type=sends.SEND,
        attempt=0,
        emitted_at=step.at,
        subscription=None,
        generation=2,
        object=step.document,
        fingerprint=hashlib.sha256(body).digest(),
        sms=sms,
        send=step,
    )


def parse_own(event_id: str, event_type: str, body: bytes) -> Envelope | Malformed:
    """A stored event of the receiver's own, read again (the projector, replay, rebuild)."""
    try:
        if event_type == REGISTRATION:
            return registration_event(body, event_id)
        if event_type == sends.SEND:
            return send_event(body, event_id)
        return _api_envelope(event_id, event_type, sms_object(orjson.loads(body)))
    except (SmsInvalid, ValueError, KeyError, TypeError) as error:
        return Malformed(
            key=event_id,
            reason=f"{event_type} body cannot be read: {error}",
            type=event_type,
            attempt=0,
            subscription=None,
            fingerprint=b"",
        )


def parse_stored(
    event_id: str, event_type: str | None, body: bytes, *, own: bool
) -> Envelope | Malformed:
    """A stored event read again: the receiver's own (`events.own`: stored by the code that
    makes them, never by the webhook) by their type, every other from its body, as
    ingest reads a webhook today."""
    if own and event_type is not None:
        return parse_own(event_id, event_type, body)
    return parse_envelope(body, fingerprint=False)
