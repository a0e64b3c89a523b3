"""Sends through the receiver, as events: what was asked, each try, and how each ended.

Every step of a send is an event of the receiver's own (type `receiver.send`, id
`send:<send id>:<seq>`), stored and applied through the one way in, so that a
rebuild gives every send's record again, and so that a try is on disk before the
request leaves for CALLR:

| step | written | the send's state after it |
|---|---|---|
| `requested` | by `POST /api/v1/sms` or `receiver send`, before the 202 | queued |
| `attempt` | by the sender, before it calls CALLR | submitted |
| `accepted` | CALLR answered with the SMS id, or a look-up found the SMS | accepted |
| `rejected` | CALLR refused the SMS (its code and message) | rejected |
| `retry` | the request certainly created nothing (refused connection, 429, 5xx) | queued |
| `lost` | the answer was lost after CALLR may have created the SMS | submitted |
| `absent` | a look-up after the window showed CALLR has no such SMS | queued |
| `unknown` | undecided after RECEIVER_SEND_UNKNOWN_AFTER: never sent again by itself | unknown |
| `settled` | an admin said what became of an unknown send | accepted, rejected or queued |

Each step carries the send's `seq`, one more than the step before it: a step
applies only over an older one, so the record does not depend on the order the
events are read in. `accepted` also carries what the message record needs (to,
from, text, user_data, nature): the record exists from CALLR's answer on, before its
first webhook, with the `user_data` of the send, whichever API sent it. The parts and
encoding of the record are CALLR's alone (`callr_parts`, `callr_encoding` when its
answer gave them, as v2's does; else its reports): the receiver's estimate is the
send's, never the record's, so what CALLR bills always wins. (Steps written before
carried the estimate as `parts` and `encoding`: it is not read.)
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from receiver.callr.sms import SmsInvalid, Snapshot
from receiver.status import Status

SEND = "receiver.send"
PREFIX = "send:"


class SendState(enum.StrEnum):
    QUEUED = "queued"
    """Durable, waiting for the sender (first try, or a try again)."""
    SUBMITTED = "submitted"
    """A request to CALLR is in flight, or its answer was lost and is being looked for."""
    ACCEPTED = "accepted"
    """CALLR created the SMS: `sms_id` is its id."""
    REJECTED = "rejected"
    """CALLR refused it: `error` says why. Never tried again."""
    UNKNOWN = "unknown"
    """Whether CALLR created it could not be found out: an admin settles it."""


class Step(enum.StrEnum):
    REQUESTED = "requested"
    ATTEMPT = "attempt"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RETRY = "retry"
    LOST = "lost"
    ABSENT = "absent"
    UNKNOWN = "unknown"
    SETTLED = "settled"


_STATE_AFTER = {
    Step.REQUESTED: SendState.QUEUED,
    Step.ATTEMPT: SendState.SUBMITTED,
    Step.ACCEPTED: SendState.ACCEPTED,
    Step.REJECTED: SendState.REJECTED,
    Step.RETRY: SendState.QUEUED,
    Step.LOST: SendState.SUBMITTED,
    Step.ABSENT: SendState.QUEUED,
    Step.UNKNOWN: SendState.UNKNOWN,
}
REQUEST_FIELDS = ("to", "text", "from", "user_data", "nature", "encoding")


@dataclass(frozen=True, slots=True)
class SendStep:
    """One step of a send, read from its event."""

    send_id: str
    seq: int
    step: Step
    at: datetime
    state: SendState
    document: dict[str, object]
    """The event's body: the request's fields for `requested`, the outcome's for the others."""

    @property
    def attempt(self) -> int | None:
        value = self.document.get("attempt")
        return value if isinstance(value, int) else None

    @property
    def sms_id(self) -> str | None:
        value = self.document.get("sms_id")
        return value if isinstance(value, str) and value else None

    @property
    def error(self) -> str | None:
        value = self.document.get("error")
        return value if isinstance(value, str) and value else None

    @property
    def next_at(self) -> datetime | None:
        value = self.document.get("next_at")
        return datetime.fromisoformat(value) if isinstance(value, str) else None


def request_digest(request: dict[str, object]) -> str:
    """What makes two requests the same: their fields, however the JSON was written."""
    fields = {name: request.get(name) for name in REQUEST_FIELDS}
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


def step_body(send_id: str, seq: int, step: Step, at: datetime, **fields: Any) -> bytes:
    """The body of a step's event: the send, the step, when, and what it says."""
    document = {"send_id": send_id, "seq": seq, "step": step.value, "at": at.isoformat()}
    document.update({k: v for k, v in fields.items() if v is not None})
    return orjson.dumps(document)


def event_id(send_id: str, seq: int) -> str:
    return f"{PREFIX}{send_id}:{seq}"


def parse_step(body: bytes) -> tuple[SendStep, Snapshot | None]:
    """A send's step from its event body, and for `accepted`, its SMS as a snapshot.

    Raises `SmsInvalid` (or ValueError, KeyError, TypeError) for a body that is not one.
    """
    document = orjson.loads(body)
    if not isinstance(document, dict):
        raise SmsInvalid("a send step must be an object")
    step = Step(document["step"])
    at = datetime.fromisoformat(document["at"])
    if at.tzinfo is None:
        raise SmsInvalid("a send step's time must have its zone")
    seq = document["seq"]
    if not isinstance(seq, int) or seq < 1:
        raise SmsInvalid("a send step's seq must be a positive integer")
    state = _STATE_AFTER.get(step) or SendState(document["state"])
    parsed = SendStep(str(document["send_id"]), seq, step, at, state, document)
    if state is not SendState.ACCEPTED:
        return parsed, None
    sms_id = parsed.sms_id
    if sms_id is None:
        raise SmsInvalid("an accepted send step must name CALLR's SMS id")
    message = document.get("message") or {}
    return parsed, _snapshot(sms_id, message, at)


def _snapshot(sms_id: str, message: dict[str, object], at: datetime) -> Snapshot:
    created_at = at.replace(microsecond=0)
    nature = message.get("nature")
    return Snapshot(
        sms_id=sms_id.lower(),
        direction="outbound",
        from_number=_text(message.get("from")),
        to_number=_text(message.get("to")),
        text=_text(message.get("text")),
        user_data=_text(message.get("user_data")),
        encoding=_callr_encoding(message.get("callr_encoding")),
        parts=_callr_parts(message.get("callr_parts")),
        cost=None,
        cost_cents=None,
        network=None,
        nature=nature.lower() if isinstance(nature, str) else None,
        error=None,
        created_at=created_at,
        sent_at=None,
        delivered_at=None,
        status=Status.CREATED,
        provider_status="created",
        status_at=created_at,
        history=(),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _callr_encoding(value: object) -> str | None:
    return value if value in ("gsm", "unicode") else None


def _callr_parts(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
