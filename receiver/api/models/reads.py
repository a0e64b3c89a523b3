"""What the reads give the answers (and the console) before the answer models check it:
the dicts of receiver.api.queries, typed for the code that reads them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NotRequired, TypedDict


class Page(TypedDict):
    """A page of a list: its items and the cursor of the next page (None: the last)."""

    items: Sequence[Mapping[str, object]]
    next_cursor: str | None
    number_searched: NotRequired[str | None]


# A message as the API answers it (`from` is a keyword: the functional form names it).
Message = TypedDict(
    "Message",
    {
        "id": str,
        "direction": str,
        "from": str | None,
        "to": str | None,
        "text": str | None,
        "user_data": str | None,
        "status": str,
        "provider_status": str | None,
        "status_at": datetime,
        "created_at": datetime,
        "sent_at": datetime | None,
        "delivered_at": datetime | None,
        "parts": int | None,
        "cost": str | None,
        "cost_cents": str | None,
        "network": str | None,
        "encoding": str | None,
        "nature": str | None,
        "error": str | None,
        "anomaly": bool,
    },
)


class MessageFound(Message):
    """A message with its history, its events and forwards, and CALLR's word on it."""

    history: list[dict[str, object]]
    events: list[dict[str, object]]
    forwards: list[dict[str, object]]
    reconciliation: dict[str, object] | None
