"""Messages, their history, events, deliveries and forwards, as the reads answer them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import (
    Field,
)

from receiver.api.models.base import (
    Answer,
    EventStateName,
    ForwardStateName,
    StatusName,
)

# ------------------------------------------------------------------ messages


class Message(Answer):
    id: str = Field(description="the SMS id, lower case")
    direction: Literal["outbound", "inbound"]
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    text: str | None = None
    user_data: str | None = None
    status: StatusName
    provider_status: str = Field(description="as CALLR spelled it")
    status_at: datetime
    created_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    parts: int | None = None
    cost: str | None = Field(
        None,
        description="v1's b_customer_debit, a decimal as CALLR reported it (CALLR documents"
        " no unit)",
    )
    cost_cents: str | None = Field(
        None, description="v2's cost, a decimal in cents as CALLR documents it"
    )
    network: str | None = Field(None, description="MCC+MNC")
    encoding: str | None = None
    nature: str | None = None
    error: str | None = None
    anomaly: bool = Field(description="the reports of this SMS disagree")


class HistoryStep(Answer):
    before: StatusName
    after: StatusName
    at: datetime
    derived: bool = Field(description="inferred, not reported")
    event_id: str
    reported_at: datetime | None = Field(
        None,
        description="when the event that reported the step (or, derived, the event it was"
        " inferred from) arrived",
    )


class MessageEvent(Answer):
    event_id: str
    type: str | None
    received_at: datetime
    state: EventStateName
    tries: list[int]


class Forward(Answer):
    id: int
    kind: Literal["reply", "status"] = Field(
        description="an inbound SMS, or a change of an outbound SMS's status"
    )
    event_id: str
    sms_id: str
    handler_id: int | None = None
    rule: Literal["user_data", "recent_mt", "default", "unrouted"]
    user_data: str | None = None
    mt_sms_id: str | None = None
    status_before: str | None = Field(None, description="a status change: from")
    status_after: str | None = Field(None, description="a status change: to")
    state: ForwardStateName
    attempts: int
    next_attempt_at: datetime | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    last_error: str | None = None


class Reconciliation(Answer):
    """What `receiver callr reconcile` last learned of an SMS."""

    checks: int
    checked_at: datetime
    unknown: bool = Field(description="CALLR does not know it (not asked again)")
    answer_status: str | None = None


class MessageDetail(Message):
    history: list[HistoryStep]
    events: list[MessageEvent]
    forwards: list[Forward]
    reconciliation: Reconciliation | None = None


class MessagePage(Answer):
    items: list[Message]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")
    number_searched: str | None = Field(
        None,
        description="with `number`: the start of the E.164 numbers searched (a national"
        " number read by RECEIVER_DEFAULT_REGION's rules, e.g. `06 12` in FR as `+33612`)",
    )


# -------------------------------------------------------------------- events


class Event(Answer):
    event_id: str
    type: str | None = None
    emitted_at: datetime | None = None
    received_at: datetime
    state: EventStateName
    reason: str | None = None
    sms_id: str | None = None


class Delivery(Answer):
    try_: int | None = Field(alias="try")
    received_at: datetime
    headers: dict[str, str]
    conflict: bool
    subscription: str | None = None
    remote_addr: str | None = None
    body: str | None = Field(None, description="a conflicting delivery's own body, when UTF-8")
    body_base64: str | None = Field(None, description="a conflicting delivery's own body")


class EventDetail(Event):
    subscription: str | None = None
    body: str | None = Field(None, description="the raw body, when it is UTF-8")
    body_base64: str = Field(description="the raw body, always")
    deliveries: list[Delivery]


class EventPage(Answer):
    items: list[Event]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class ForwardPage(Answer):
    items: list[Forward]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class RetriedForward(Answer):
    id: int
    state: str
