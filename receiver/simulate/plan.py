"""The plan of `receiver simulate`: realistic CALLR traffic.

The traffic is a plan of SMS, each with the events CALLR would send for it:
outbound SMS going through their lifecycles (v1 or v2, with or without their
status history; some failing or expiring), MO replies to some of them, and the
irregularities of real delivery: repeats, retries with a higher `try`, the same
event through a second subscription, updates that arrive out of order; and now and
then an event the receiver keeps without applying it (invalid, or of a type it does
not handle), so that the Events page shows what they look like.

Every time in an event is at most the moment the plan is made (the end of its
window): no SMS is reported created, sent or answered in the future.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from receiver.callr.sms import V1_NAMES
from receiver.status import Status

C, P, S, Q, D, F, E = (
    Status.CREATED,
    Status.PENDING,
    Status.SENT,
    Status.REMOTE_QUEUED,
    Status.DELIVERED,
    Status.FAILED,
    Status.EXPIRED,
)
# The plan's SMS are created in this many seconds before the plan is made, and every
# step of each (its reply included) falls in it too.
WINDOW = 1800
DELIVERED_PATHS = [(C, P, S, D), (C, P, S, Q, D), (C, S, D)]
FAILED_PATHS = [(C, P, S, F), (C, P, S, Q, E)]


@dataclass(frozen=True)
class Mix:
    """The shares of each kind of traffic; see `parse_mix` for the command-line form."""

    v2: float = 0.5
    history: float = 0.8
    failures: float = 0.1
    mo: float = 0.1
    duplicates: float = 0.05
    retries: float = 0.05
    second_subscription: float = 0.02
    out_of_order: float = 0.1
    # SMS followed by an event the receiver keeps without applying it: invalid and of
    # a type it does not handle, in turn.
    odd: float = 0.02


def parse_mix(text: str) -> Mix:
    """`v2=0.5,mo=0.2,...`: each a share from 0 to 1 of the fields of `Mix`."""
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip().replace("-", "_")
        if name not in Mix.__dataclass_fields__:
            known = ", ".join(Mix.__dataclass_fields__)
            raise ValueError(f"unknown share {name!r} (known: {known})")
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a number") from None
        if not 0 <= share <= 1:
            raise ValueError(f"{name}={value} is not between 0 and 1")
        values[name] = share
    return Mix(**values)


@dataclass(frozen=True)
class Delivery:
    """One planned request: an event of one SMS, and what it tells about that SMS."""

    event_id: str
    sms_id: str | None
    """None for an event that is about no SMS the receiver keeps (`kind` says why)."""
    outbound: bool
    step: int
    status: Status
    document: dict[str, object]
    kind: Literal["sms", "invalid", "unhandled"] = "sms"

    def tried(self, attempt: int) -> dict[str, object]:
        """The document as CALLR sends it on its `attempt`-th retry (`try` counted on)."""
        tried = self.document["try"]
        assert isinstance(tried, int)  # the plan writes it
        return {**self.document, "try": tried + attempt}


class Plan:
    """The events of `messages` SMS, in the order they are to be sent."""

    def __init__(
        self, messages: int, mix: Mix, *, seed: int | None = None, start: datetime | None = None
    ) -> None:
        self.messages = messages
        self.mix = mix
        self.rng = random.Random(seed)  # noqa: S311 - traffic, not secrets
        self.run = secrets.token_hex(3) if seed is None else f"{seed:06x}"[-6:]
        # With the same seed and start, the same traffic to the byte.
        self.start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=WINDOW)

    def deliveries(self) -> Iterator[Delivery]:
        """Each SMS's events, SMS after SMS, with the mix's irregularities."""
        for n in range(self.messages):
            yield from self._sms(n)

    def _sms(self, n: int) -> list[Delivery]:
        rng, mix = self.rng, self.mix
        sms_id = f"sim{self.run}{n:08d}"
        path = rng.choice(FAILED_PATHS if rng.random() < mix.failures else DELIVERED_PATHS)
        gaps = [rng.randint(1, 20) for _ in path[1:]]
        replied = path[-1] is D and rng.random() < mix.mo
        reply_after = rng.randint(5, 120) if replied else 0
        # The SMS's whole life, reply included, inside the window.
        span = sum(gaps) + reply_after
        created = self.start + timedelta(seconds=rng.randrange(max(1, WINDOW - span)))
        times = [created]
        for gap in gaps:
            times.append(times[-1] + timedelta(seconds=gap))
        v2 = rng.random() < mix.v2
        events = [
            Delivery(
                event_id=f"{sms_id}-{k}",
                sms_id=sms_id,
                outbound=True,
                step=k,
                status=path[k],
                document=(_v2 if v2 else _v1)(
                    f"{sms_id}-{k}",
                    sms_id,
                    path[: k + 1],
                    times[: k + 1],
                    history=rng.random() < mix.history,
                ),
            )
            for k in range(1, len(path))
        ]
        if replied:
            reply_id = f"mo{self.run}{n:08d}"
            at = times[-1] + timedelta(seconds=reply_after)
            events.append(
                Delivery(
                    event_id=f"{reply_id}-0",
                    sms_id=reply_id,
                    outbound=False,
                    step=1,
                    status=D,
                    document=(_v2_mo if v2 else _v1_mo)(f"{reply_id}-0", reply_id, at),
                )
            )
        if len(events) > 1 and rng.random() < mix.out_of_order:
            k = rng.randrange(len(events) - 1)
            events[k], events[k + 1] = events[k + 1], events[k]
        planned: list[Delivery] = []
        for event in events:
            planned.append(event)
            if rng.random() < mix.duplicates:
                planned.append(event)
            if rng.random() < mix.retries:
                planned.append(_with(event, attempt=1))
            if rng.random() < mix.second_subscription:
                planned.append(_with(event, subscription="second"))
        if rng.random() < mix.odd:
            planned.append(_odd(f"odd{self.run}{n:08d}", times[-1], invalid=n % 2 == 1))
        return planned


def _odd(event_id: str, at: datetime, *, invalid: bool) -> Delivery:
    """An event the receiver keeps without applying it: a status update with no SMS id
    (invalid: answered 400, kept with its reason), or a billing event (of a type it does
    not handle)."""
    if invalid:
        document = _v1(event_id, "sim000000000000", (C, S), [at, at], history=False)
        data = document["data"]
        assert isinstance(data, dict)
        del data["hash"]
    else:
        document = {
            "event_id": event_id,
            "event_at": at.isoformat().replace("+00:00", "Z"),
            "hook_hash": "SIMHOOK3",
            "try": 0,
            "type": "billing.credit",
            "data": {"amount": "12.00", "currency": "EUR"},
        }
    return Delivery(
        event_id, None, True, 0, C, document, kind="invalid" if invalid else "unhandled"
    )


def _with(delivery: Delivery, *, attempt: int = 0, subscription: str | None = None) -> Delivery:
    document = delivery.tried(attempt)
    if subscription is not None:
        key = "sid" if "sid" in document else "hook_hash"
        document[key] = f"{subscription}{document[key]}"[:8]
    return Delivery(
        delivery.event_id,
        delivery.sms_id,
        delivery.outbound,
        delivery.step,
        delivery.status,
        document,
        delivery.kind,
    )


def _v1_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _v2_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _reached(path: tuple[Status, ...], times: list[datetime], status: Status) -> datetime | None:
    return next((t for s, t in zip(path, times, strict=True) if s is status), None)


def _v1(
    event_id: str, sms_id: str, path: tuple[Status, ...], times: list[datetime], *, history: bool
) -> dict[str, object]:
    sent, received = _reached(path, times, S), _reached(path, times, D)
    status = path[-1]
    return {
        "event_id": event_id,
        "event_at": times[-1].isoformat().replace("+00:00", "Z"),
        "hook_hash": "SIMHOOK1",
        "try": 0,
        "type": "sms.mt.status_update",
        "data": {
            "type": "OUT",
            "hash": sms_id.upper(),
            "from": "SMS",
            "to": "+336" + sms_id[-8:],
            "text": "Your code is 482913",
            "options": None,
            "encoding": "GSM",
            "user_data": f"campaign-{int(sms_id[-8:]) % 7}",
            "b_customer_mode": "PREPAID",
            "b_customer_debit": "4.50",
            "network": f"2080{int(sms_id[-8:]) % 5}",
            "status": V1_NAMES[status],
            "status_error": "rejected by the carrier" if status in (F, E) else "",
            "parts": 1,
            "nature": "ALERTING",
            "date_creation": _v1_time(times[0]),
            "date_update": _v1_time(times[-1]),
            "date_sent": _v1_time(sent) if sent else "0000-00-00 00:00:00",
            "date_received": _v1_time(received) if received else "0000-00-00 00:00:00",
            "status_history": [
                {"old_status": V1_NAMES[a], "new_status": V1_NAMES[b], "updated_at": _v1_time(t)}
                for a, b, t in zip(path, path[1:], times[1:], strict=False)
            ]
            if history
            else [],
        },
    }


def _v2(
    event_id: str, sms_id: str, path: tuple[Status, ...], times: list[datetime], *, history: bool
) -> dict[str, object]:
    sent, delivered = _reached(path, times, S), _reached(path, times, D)
    status = path[-1]
    return {
        "id": event_id,
        "at": times[-1].isoformat().replace("+00:00", "Z"),
        "sid": "simsub01",
        "type": "v2.sms.outbound.updated",
        "try": 0,
        "payload": {
            "direction": "outbound",
            "sid": sms_id,
            "from": "SMS",
            "to": "+336" + sms_id[-8:],
            "body": {"text": "Your code is 482913"},
            "trafficType": "alerting",
            "status": status.value,
            "error": "rejected by the carrier" if status in (F, E) else "",
            "created": _v2_time(times[0]),
            "sent": _v2_time(sent) if sent else None,
            "delivered": _v2_time(delivered) if delivered else None,
            "updated": _v2_time(times[-1]),
            "parts": 1,
            "network": f"2080{int(sms_id[-8:]) % 5}",
            "encoding": "gsm",
            "cost": "4.50",
            "paymentType": "prepaid",
            "statusHistory": [
                {"before": a.value, "after": b.value, "at": _v2_time(t)}
                for a, b, t in zip(path, path[1:], times[1:], strict=False)
            ]
            if history
            else [],
        },
    }


def _v1_mo(event_id: str, sms_id: str, at: datetime) -> dict[str, object]:
    return {
        "event_id": event_id,
        "event_at": at.isoformat().replace("+00:00", "Z"),
        "hook_hash": "SIMHOOK2",
        "try": 0,
        "type": "sms.mo",
        "data": {
            "type": "IN",
            "hash": sms_id.upper(),
            "from": "+336" + sms_id[-8:],
            "to": "SMS",
            "text": "YES",
            "options": None,
            "encoding": "GSM",
            "user_data": "",
            "b_customer_mode": "PREPAID",
            "b_customer_debit": "0.00",
            "network": "",
            "status": "RECEIVED",
            "status_error": "",
            "parts": 1,
            "nature": "ALERTING",
            "date_creation": _v1_time(at),
            "date_update": _v1_time(at),
            "date_sent": "0000-00-00 00:00:00",
            "date_received": _v1_time(at),
            "status_history": [
                {"old_status": "CREATED", "new_status": "RECEIVED", "updated_at": _v1_time(at)}
            ],
        },
    }


def _v2_mo(event_id: str, sms_id: str, at: datetime) -> dict[str, object]:
    return {
        "id": event_id,
        "at": at.isoformat().replace("+00:00", "Z"),
        "sid": "simsub02",
        "type": "v2.sms.inbound.received",
        "try": 0,
        "payload": {
            "direction": "inbound",
            "sid": sms_id,
            "from": "+336" + sms_id[-8:],
            "to": "SMS",
            "body": {"text": "YES"},
            "trafficType": "alerting",
            "status": "delivered",
            "error": "",
            "created": _v2_time(at),
            "delivered": _v2_time(at),
            "updated": _v2_time(at),
            "sent": None,
            "parts": 1,
            "network": "20801",
            "encoding": "gsm",
            "cost": "0.0",
            "paymentType": "prepaid",
            "statusHistory": [{"before": "created", "after": "delivered", "at": _v2_time(at)}],
        },
    }
