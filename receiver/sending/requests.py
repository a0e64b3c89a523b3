"""A request to send an SMS: checked, made durable as its first event, and read back.

`POST /api/v1/sms` and `receiver send` both come here. A request is durable once
its `requested` event is stored and applied (the `sends` row exists): the 202 is
answered after that, and the sender takes it from there. An idempotency key names
one send for good: the same key with the same request is that send again, with
another request a conflict.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from receiver.callr import sends
from receiver.callr.gsm import ASSUMED_STOP_DIGITS, ENCODINGS, MAX_TEXT, STOPNUM, parts_of
from receiver.callr.own import send_event
from receiver.callr.sms import MAX_USER_DATA
from receiver.db.engine import Connection, Record
from receiver.projection.apply import store_and_apply

NOTIFY_CHANNEL = "receiver_sends"
NATURES = ("alerting", "marketing")
MAX_KEY = 255
FIELDS = ("to", "text", "from", "user_data", "nature", "encoding")

# E.164: a plus, a country code that does not start with 0, at most 15 digits.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# CALLR's sender. v1 (sms.send, POST /sms): a dedicated short code (digits alone), or
# 1 to 11 of a-z A-Z 0-9, space, dash and underscore with at least one letter. v2
# (POST /v2.0/sms): 11 characters at most, a phone number or an alphanumeric sender.
_SHORT_CODE = re.compile(r"[0-9]{3,8}")
_V2_NUMBER = re.compile(r"(?=.{3,11}$)\+?[0-9]+")
_SENDER_NAME = re.compile(r"[A-Za-z0-9 _-]{1,11}")
_KEY = re.compile(r"[\x21-\x7e]{1,255}")

# A key is its owner's (the token that used it): another token's same key is another
# send. Sends made before keys had owners (migration 0019) keep their keys for all.
# A send with what CALLR bills for its SMS, once its message record has it.
WITH_BILLED = """
SELECT s.*, m.parts AS callr_parts, m.encoding AS callr_encoding
FROM sends s LEFT JOIN messages m ON m.sms_id = s.sms_id
"""
_BY_KEY = (
    WITH_BILLED
    + """WHERE s.idempotency_key = $1 AND (s.key_owner = $2 OR s.key_owner IS NULL)
ORDER BY s.key_owner NULLS LAST LIMIT 1"""
)
OWNER_CLI = "cli"
"""The owner of the sends `receiver send` makes (a token's owner is its digest)."""
_BY_ID = WITH_BILLED + "WHERE s.id = $1"


class Invalid(ValueError):
    """A request the receiver refuses: `parameter` names the field."""

    def __init__(self, parameter: str | None, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class Conflict(Exception):
    """The idempotency key names a send of another request."""

    def __init__(self, send_id: str) -> None:
        super().__init__(
            "this Idempotency-Key was used for another request (send "
            f"{send_id}): use a new key for a new SMS"
        )
        self.send_id = send_id


@dataclass(frozen=True, slots=True)
class SendRequest:
    to: str
    text: str
    sender: str | None = None
    user_data: str | None = None
    nature: str | None = None
    encoding: Literal["gsm", "unicode"] | None = None

    def fields(self) -> dict[str, object]:
        return {
            "to": self.to,
            "text": self.text,
            "from": self.sender,
            "user_data": self.user_data,
            "nature": self.nature,
            "encoding": self.encoding,
        }


def read_request(
    document: Any, *, prefix: str | None = None, api: Literal["v1", "v2"] | None = None
) -> SendRequest:
    """The request in a JSON body; raises `Invalid` naming the first bad field.

    `prefix`: the send token's, which every user_data must start with. `api`: the
    CALLR API that will send it, whose sender rules apply (both's, when unknown).
    """
    if not isinstance(document, dict):
        raise Invalid(None, "body must be a JSON object")
    unknown = sorted(set(document) - set(FIELDS))
    if unknown:
        raise Invalid(unknown[0], f"unknown field(s): {', '.join(unknown)}")
    to = document.get("to")
    if not isinstance(to, str) or not _E164.fullmatch(to):
        raise Invalid("to", "to must be a number in E.164 form, such as +33612345678")
    text = document.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT:
        raise Invalid("text", f"text must be a string of 1 to {MAX_TEXT} characters")
    if "\x00" in text:
        raise Invalid("text", "text must not contain a NUL character")
    sender = _optional(document, "from")
    if sender is not None and not sender_ok(sender, api):
        raise Invalid("from", f"from must be {sender_rules(api)}")
    user_data = _optional(document, "user_data")
    if user_data is not None and len(user_data) > MAX_USER_DATA:
        raise Invalid("user_data", f"user_data must be at most {MAX_USER_DATA} characters")
    if user_data is not None and "\x00" in user_data:
        raise Invalid("user_data", "user_data must not contain a NUL character")
    if prefix is not None and not (user_data or "").startswith(prefix):
        raise Invalid(
            "user_data", f"this token sends only with a user_data that starts with {prefix!r}"
        )
    nature = _optional(document, "nature")
    if nature is not None and nature not in NATURES:
        raise Invalid("nature", f"nature must be one of {', '.join(NATURES)}")
    encoding = _optional(document, "encoding")
    if encoding is not None and encoding not in ENCODINGS:
        raise Invalid("encoding", f"encoding must be one of {', '.join(ENCODINGS)}")
    return SendRequest(to, text, sender, user_data, nature, encoding)


def read_key(value: str | None) -> str | None:
    """The Idempotency-Key header's value; raises `Invalid` for one that cannot be kept."""
    if value is None:
        return None
    if not _KEY.fullmatch(value):
        raise Invalid(
            "Idempotency-Key",
            f"Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters without spaces",
        )
    return value


def _optional(document: dict[str, object], name: str) -> str | None:
    value = document.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid(name, f"{name} must be a string")
    return value


_NAME_RULE = "1 to 11 of A-Z a-z 0-9, space, - and _ with at least one letter"


def sender_rules(api: Literal["v1", "v2"] | None) -> str:
    """CALLR's sender rules for `api`, in words."""
    if api == "v1":
        return f"a dedicated short code (3 to 8 digits) or {_NAME_RULE} (CALLR's v1 sender rules)"
    if api == "v2":
        return f"a number of at most 11 characters or {_NAME_RULE} (CALLR's v2 sender rules)"
    return (
        f"a short code (3 to 8 digits), a number of at most 11 characters (v2) or {_NAME_RULE}"
        " (CALLR's sender rules)"
    )


def sender_ok(sender: str, api: Literal["v1", "v2"] | None = None) -> bool:
    """Whether CALLR takes `sender` as the `from` of an SMS sent through `api` (None:
    either API)."""
    if _SENDER_NAME.fullmatch(sender) and any(c.isalpha() for c in sender):
        return True
    if api == "v1":
        return bool(_SHORT_CODE.fullmatch(sender))
    if api == "v2":
        return bool(_V2_NUMBER.fullmatch(sender))
    return bool(_SHORT_CODE.fullmatch(sender) or _V2_NUMBER.fullmatch(sender))


REPLY_WARNING = (
    "a custom sender is set: CALLR's receive page says not to set one when replies are"
    " wanted (without it CALLR uses a number that can be answered)"
)
STOPNUM_WARNING = (
    "%STOPNUM% is replaced by CALLR only when a custom sender is set: without one it goes"
    " out as written"
)
STOP_LENGTH_WARNING = (
    "the parts count %STOPNUM% as the STOP number: RECEIVER_CALLR_STOP_NUMBER's, or"
    f" {ASSUMED_STOP_DIGITS} digits when it is not set; CALLR's count may differ"
)


def warnings(text: str, sender: str | None) -> list[str]:
    """What a sender should know of a request CALLR will take as it is."""
    found = []
    if sender:
        found.append(REPLY_WARNING)
        if STOPNUM in text:
            found.append(STOP_LENGTH_WARNING)
    elif STOPNUM in text:
        found.append(STOPNUM_WARNING)
    return found


def new_send_id(now: datetime) -> str:
    """`snd_` then the time in milliseconds and 48 random bits: unique, in time order."""
    return f"snd_{int(now.timestamp() * 1000):012x}{secrets.token_hex(6)}"


async def request_send(
    conn: Connection,
    request: SendRequest,
    *,
    api: Literal["v1", "v2"],
    key: str | None,
    owner: str,
    source: str,
    routing_window: timedelta,
    stop_number: str | None = None,
) -> tuple[Any, bool]:
    """Make `request` durable, or find the send its key already names.

    Returns the `sends` row and whether it is new; raises `Conflict` when the key
    names a send of another request.
    """
    digest = sends.request_digest(request.fields())
    async with conn.transaction():
        if key is not None:
            # Two requests with one key at once: the second waits, then finds the first.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", key)
            found = await conn.fetchrow(_BY_KEY, key, owner)
            if found is not None:
                if found["request_digest"] != digest:
                    raise Conflict(found["id"])
                return found, False
        now = datetime.now(UTC)
        send_id = new_send_id(now)
        parts = parts_of(
            request.text, request.encoding, sender=request.sender, stop_number=stop_number
        )
        body = sends.step_body(
            send_id,
            1,
            sends.Step.REQUESTED,
            now,
            to=request.to,
            text=request.text,
            **{"from": request.sender},
            user_data=request.user_data,
            nature=request.nature,
            # The receiver's estimate of the encoding it goes out in and of its parts
            # (CALLR's own, once reported, are the message record's), and the encoding
            # asked for (CALLR's force_encoding).
            encoding=parts.encoding,
            forced_encoding=request.encoding,
            parts=parts.parts,
            api=api,
            idempotency_key=key,
            key_owner=owner,
            request_digest=digest,
        )
        await store_and_apply(
            conn, [(send_event(body), body)], source=source, routing_window=routing_window
        )
        row = await conn.fetchrow(_BY_ID, send_id)
        if row is None:  # parked: its values could not be kept
            raise Invalid(None, "the request could not be kept: see the receiver's log")
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return row, True


async def find(conn: Connection, send_id: str) -> Record | None:
    return await conn.fetchrow(_BY_ID, send_id)


_LOCK = "SELECT seq, state FROM sends WHERE id = $1 FOR UPDATE"
_HOLDER = "SELECT id FROM sends WHERE sms_id = $1 AND id <> $2"


async def append_step(
    conn: Connection,
    send_id: str,
    seq: int,
    step: sends.Step,
    at: datetime,
    *,
    source: str,
    routing_window: timedelta,
    **fields: Any,
) -> bool:
    """Store and apply step `seq` of a send, in a transaction of its own.

    False when the send is no longer at `seq - 1` (another sender, or an admin,
    moved it on): nothing is written then.
    """
    body = sends.step_body(send_id, seq, step, at, **fields)
    async with conn.transaction():
        current = await conn.fetchrow(_LOCK, send_id)
        if current is None or current["seq"] != seq - 1:
            return False
        new = await store_and_apply(
            conn, [(send_event(body), body)], source=source, routing_window=routing_window
        )
        if step in (sends.Step.ABSENT, sends.Step.SETTLED):  # due now: wake the senders
            await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return bool(new)


_SMS_ID = re.compile(r"[A-Za-z0-9]{1,64}")
MAX_SETTLE_ERROR = 1000


class NotSettled(Exception):
    """Only an unknown send is settled: this one is not (any more)."""


async def settle(
    conn: Connection,
    send_id: str,
    *,
    state: sends.SendState,
    sms_id: str | None,
    error: str | None,
    source: str,
    routing_window: timedelta,
) -> Any:
    """An admin says what became of an `unknown` send: accepted (with CALLR's SMS id),
    rejected (never sent), or queued (certainly not sent: send it again).

    Returns the send as it is now; None when no send has the id. Raises `NotSettled`
    when the send is not unknown, or moved on meanwhile.
    """
    if sms_id is not None and not _SMS_ID.fullmatch(sms_id):
        raise Invalid("sms_id", "sms_id is CALLR's id: 1 to 64 letters and digits")
    if error is not None and len(error) > MAX_SETTLE_ERROR:
        raise Invalid("error", f"error must be at most {MAX_SETTLE_ERROR} characters")
    row = await find(conn, send_id)
    if row is None:
        return None
    if row["state"] != sends.SendState.UNKNOWN:
        raise NotSettled(f"only an unknown send is settled; this one is {row['state']}")
    fields: dict[str, object] = {"state": state.value, "attempt": row["attempts"]}
    if state is sends.SendState.ACCEPTED:
        if not sms_id:
            raise Invalid("sms_id", "an accepted send needs CALLR's SMS id")
        holder = await conn.fetchval(_HOLDER, sms_id.lower(), row["id"])
        if holder is not None:
            # Kept as it is, the step could never be applied (one send an SMS).
            raise NotSettled(f"the SMS {sms_id.lower()} is the send {holder}'s already")
        fields |= {"sms_id": sms_id.lower(), "message": message_of(row)}
    elif state is sends.SendState.REJECTED:
        fields["error"] = error or "settled by an admin: not sent"
    fields["reason"] = "settled by an admin"
    written = await append_step(
        conn,
        row["id"],
        row["seq"] + 1,
        sends.Step.SETTLED,
        datetime.now(UTC),
        source=source,
        routing_window=routing_window,
        **fields,
    )
    if not written:
        raise NotSettled("the send moved on meanwhile: read it again")
    return await find(conn, row["id"])


def message_of(
    row: Record, *, parts: int | None = None, encoding: str | None = None
) -> dict[str, object]:
    """What the message record of an accepted send takes from it, with the `parts` and
    `encoding` CALLR's answer gave (never the receiver's estimate)."""
    message = {
        "to": row["to_number"],
        "from": row["from_number"],
        "text": row["text"],
        "user_data": row["user_data"],
        "nature": row["nature"],
    }
    if parts is not None:
        message["callr_parts"] = parts
    if encoding is not None:
        message["callr_encoding"] = encoding
    return message


def view(row: Record) -> dict[str, object]:
    """A send as the API shows it: parts and encoding CALLR's once it reported them."""
    parts = parts_of(row["text"], row["forced_encoding"])
    billed = row["callr_parts"] is not None
    return {
        "id": row["id"],
        "state": row["state"],
        "sms_id": row["sms_id"],
        "error": row["error"],
        "reason": row["reason"],
        "attempts": row["attempts"],
        "to": row["to_number"],
        "from": row["from_number"],
        "text": row["text"],
        "user_data": row["user_data"],
        "nature": row["nature"],
        "encoding": row["callr_encoding"] or row["encoding"],
        "parts": row["callr_parts"] if billed else row["parts"],
        "parts_from": "callr" if billed else "estimate",
        "estimated_parts": row["parts"],
        "estimated_encoding": row["encoding"],
        "warnings": warnings(row["text"], row["from_number"]),
        "forced_unicode_by": list(parts.forced_unicode_by),
        "replaced": list(parts.replaced),
        "api": row["api"],
        "idempotency_key": row["idempotency_key"],
        "requested_at": _iso(row["requested_at"]),
        "attempted_at": _iso(row["attempted_at"]),
        "decided_at": _iso(row["decided_at"]),
        "updated_at": _iso(row["updated_at"]),
        "next_at": _iso(row["next_at"]) if row["state"] in ("queued", "submitted") else None,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
