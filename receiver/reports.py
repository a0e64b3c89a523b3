"""The values every stage passes on: what a stored event reports of an SMS, and what changed.

Below every stage that passes them (ingest, projection, forwarding, replay): the
projection applies `Report`s, routing announces `StatusChange`s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from receiver.callr.envelope import Envelope, Malformed
from receiver.callr.own import QUIET_TYPES
from receiver.callr.sends import SendStep
from receiver.callr.sms import Snapshot


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


@dataclass(frozen=True, slots=True)
class SendReport:
    """One newly stored step of a send through the receiver; `record` once CALLR accepted it."""

    event_id: str
    step: SendStep
    record: Report | None


Applicable = Report | SendReport
"""What the projection applies: SMS snapshots, and the steps of sends."""


def records(reports: Sequence[Applicable]) -> list[Report]:
    """The SMS snapshots among `reports`, an accepted send's record included, in order."""
    found = []
    for report in reports:
        if isinstance(report, SendReport):
            if report.record is not None:
                found.append(report.record)
        else:
            found.append(report)
    return found


def report_of(
    event_id: str, received_at: datetime, parsed: Envelope | Malformed
) -> Report | SendReport | None:
    """What a stored event reports, as the projection applies it; None if nothing."""
    if not isinstance(parsed, Envelope):
        return None
    record = None
    if parsed.sms is not None:
        record = Report(
            event_id, received_at, parsed.emitted_at, parsed.sms, parsed.type not in QUIET_TYPES
        )
    if parsed.send is not None:
        return SendReport(event_id, parsed.send, record)
    return record


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
