"""The values every stage passes on: what a stored event reports of an SMS, and what changed.

Below every stage that passes them (ingest, projection, forwarding, replay): the
projection applies `Report`s, routing announces `StatusChange`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from receiver.callr.envelope import Envelope, Malformed
from receiver.callr.own import QUIET_TYPES
from receiver.callr.sms import RANK, TERMINAL, Snapshot, Status


@dataclass(frozen=True, slots=True)
class Report:
    """One newly stored event's snapshot of an SMS."""

    event_id: str
    received_at: datetime
    emitted_at: datetime | None
    sms: Snapshot
    forward: bool = True
    """An inbound SMS is forwarded (not one imported with `callr backfill --no-forward`)."""
    status_at: datetime = field(init=False)
    """When the snapshot's status was reached; the event's own times when it does not say.
    (Worked out once: the projection reads it three times a report.)"""

    def __post_init__(self) -> None:
        at = self.sms.status_at or self.emitted_at or self.received_at
        object.__setattr__(self, "status_at", at.replace(microsecond=0) if at.microsecond else at)


def report_of(event_id: str, received_at: datetime, parsed: Envelope | Malformed) -> Report | None:
    """What a stored event reports of an SMS, as the projection applies it; None if nothing."""
    if isinstance(parsed, Envelope) and parsed.sms is not None:
        return Report(
            event_id, received_at, parsed.emitted_at, parsed.sms, parsed.type not in QUIET_TYPES
        )
    return None


def evidence_key(status: Status, at: datetime) -> tuple[bool, datetime, int, str]:
    """The total order of status evidence: terminal first, then time, rank and name."""
    return (status in TERMINAL, at, RANK[status], status.value)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """An outbound SMS's current status moved (or was first known): what a callback says."""

    sms_id: str
    before: str | None
    after: str
    at: datetime
    rank: int
    terminal: bool
    event_id: str
    """The batch's latest report of the SMS: the one whose status became current, or later."""
