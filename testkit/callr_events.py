"""Build CALLR events (v1 and v2) for one SMS at one step of its lifecycle."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from receiver.status import Status

V1_NAMES = {
    Status.CREATED: "CREATED",
    Status.PENDING: "PENDING",
    Status.SENT: "SENT",
    Status.REMOTE_QUEUED: "REMOTE_QUEUED",
    Status.DELIVERED: "RECEIVED",
    Status.ERROR: "ERROR",
    Status.FAILED: "FAILED",
    Status.EXPIRED: "EXPIRED",
}
ERROR_TEXT = "rejected by the carrier"
BASE_TIME = datetime(2026, 3, 2, 16, 56, 4, tzinfo=UTC)


@dataclass(frozen=True)
class Step:
    status: Status
    at: datetime


def v1_time(at: datetime, *, millis: int = 0) -> str:
    text = at.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{millis:03d}" if millis else text


def v2_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _reached(steps: Sequence[Step], status: Status) -> datetime | None:
    return next((step.at for step in steps if step.status is status), None)


def v1_event(
    event_id: str,
    sms_id: str,
    steps: Sequence[Step],
    *,
    with_history: bool = True,
    inbound: bool = False,
    attempt: int = 0,
    hook_hash: str | None = "IAYHJ6F3",
    user_data: str = "42",
    millis: int = 0,
) -> bytes:
    """A v1 event whose SMS is at the last of `steps` (its history is all the steps)."""
    current = steps[-1]
    history = [
        {
            "old_status": V1_NAMES[a.status],
            "new_status": V1_NAMES[b.status],
            "updated_at": v1_time(b.at, millis=millis),
        }
        for a, b in pairwise(steps)
    ]
    sent, received = _reached(steps, Status.SENT), _reached(steps, Status.DELIVERED)
    data = {
        "type": "IN" if inbound else "OUT",
        "hash": sms_id.upper(),
        "from": "+33612345678" if inbound else "SMS",
        "to": "+33644630010" if inbound else "+33612345678",
        "text": "Your code is 482913",
        "options": None,
        "encoding": "GSM",
        "user_data": "" if inbound else user_data,
        "b_customer_mode": "PREPAID",
        "b_customer_debit": "4.50",
        "network": "20801",
        "status": V1_NAMES[current.status],
        "status_error": ERROR_TEXT if current.status in (Status.ERROR, Status.FAILED) else "",
        "parts": 1,
        "nature": "ALERTING",
        "date_creation": v1_time(steps[0].at),
        "date_update": v1_time(current.at),
        "date_sent": v1_time(sent) if sent else "0000-00-00 00:00:00",
        "date_received": v1_time(received) if received else "0000-00-00 00:00:00",
        "status_history": history if with_history else [],
    }
    return _dump(
        {
            "event_id": event_id,
            "event_at": (current.at + timedelta(milliseconds=250)).isoformat(),
            "hook_hash": hook_hash,
            "try": attempt,
            "type": "sms.mo" if inbound else "sms.mt.status_update",
            "data": data,
        }
    )


def v2_event(
    event_id: str,
    sms_id: str,
    steps: Sequence[Step],
    *,
    with_history: bool = True,
    inbound: bool = False,
    attempt: int = 0,
    subscription: str = "pdszbxss",
) -> bytes:
    """A v2 event whose SMS is at the last of `steps` (its history is all the steps)."""
    current = steps[-1]
    sent, delivered = _reached(steps, Status.SENT), _reached(steps, Status.DELIVERED)
    payload = {
        "direction": "inbound" if inbound else "outbound",
        "sid": sms_id.lower(),
        "from": "+33612345678" if inbound else "SMS",
        "to": "+33644630010" if inbound else "+33612345678",
        "body": {"text": "Your code is 482913"},
        "trafficType": "alerting",
        "status": current.status.value,
        "error": ERROR_TEXT if current.status in (Status.ERROR, Status.FAILED) else "",
        "created": v2_time(steps[0].at),
        "sent": v2_time(sent) if sent else None,
        "delivered": v2_time(delivered) if delivered else None,
        "updated": v2_time(current.at),
        "parts": 1,
        "network": "20801",
        "encoding": "gsm",
        "cost": "4.50",
        "paymentType": "prepaid",
        "statusHistory": (
            [
                {"before": a.status.value, "after": b.status.value, "at": v2_time(b.at)}
                for a, b in pairwise(steps)
            ]
            if with_history
            else []
        ),
    }
    return _dump(
        {
            "id": event_id,
            "at": (current.at + timedelta(milliseconds=250)).isoformat(),
            "sid": subscription,
            "type": "v2.sms.inbound.received" if inbound else "v2.sms.outbound.updated",
            "try": attempt,
            "payload": payload,
        }
    )


def lifecycle(*statuses: Status, start: datetime = BASE_TIME, gap: int = 2) -> list[Step]:
    """Steps `gap` seconds apart from `start`."""
    return [Step(s, start + timedelta(seconds=gap * n)) for n, s in enumerate(statuses)]


def _dump(document: dict[str, object]) -> bytes:
    return json.dumps(document).encode()


def mo_event(
    event_id: str,
    sms_id: str,
    *,
    sender: str,
    recipient: str = "+33644630010",
    user_data: str = "",
    at: datetime = BASE_TIME,
    text: str = "YES",
) -> bytes:
    """A v1 `sms.mo`: `sender` answered on `recipient`."""
    document = json.loads(
        v1_event(
            event_id,
            sms_id,
            lifecycle(Status.CREATED, Status.DELIVERED, start=at, gap=0),
            inbound=True,
        )
    )
    document["data"].update({"from": sender, "to": recipient, "user_data": user_data, "text": text})
    return _dump(document)


def mt_event(
    event_id: str,
    sms_id: str,
    *,
    to: str,
    sender: str = "SMS",
    user_data: str = "42",
    at: datetime = BASE_TIME,
) -> bytes:
    """A v1 `sms.mt.status_update` for an SMS sent from `sender` to `to`."""
    document = json.loads(
        v1_event(
            event_id, sms_id, lifecycle(Status.CREATED, Status.SENT, start=at), user_data=user_data
        )
    )
    document["data"].update({"from": sender, "to": to})
    return _dump(document)
