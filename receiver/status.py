"""The statuses of an SMS, in CALLR's v2 vocabulary: the receiver's own, from which
every layer reads (CALLR's v1 names map onto them in callr/sms.py)."""

from __future__ import annotations

import enum
from datetime import datetime


class Status(enum.StrEnum):
    """An SMS status in CALLR's v2 vocabulary."""

    CREATED = "created"
    """Accepted by CALLR."""
    PENDING = "pending"
    """Waiting to be sent."""
    SENT = "sent"
    """Handed to the carrier."""
    REMOTE_QUEUED = "remote-queued"
    """Queued on the carrier side."""
    DELIVERED = "delivered"
    """Delivered to the handset (MT) or received (MO). Terminal."""
    ERROR = "error"
    """Rejected at creation. Terminal."""
    FAILED = "failed"
    """Rejected by the carrier. Terminal."""
    EXPIRED = "expired"
    """Not delivered in time. Terminal."""
    UNKNOWN = "unknown"
    """A status string this service does not know; the raw string is kept beside it."""


TERMINAL = frozenset({Status.DELIVERED, Status.ERROR, Status.FAILED, Status.EXPIRED})

# Lifecycle order, the last resort when neither history nor time orders two statuses.
RANK = {
    Status.UNKNOWN: 0,
    Status.CREATED: 1,
    Status.PENDING: 2,
    Status.SENT: 3,
    Status.REMOTE_QUEUED: 4,
    Status.DELIVERED: 5,
    Status.ERROR: 5,
    Status.FAILED: 5,
    Status.EXPIRED: 5,
}


# ------------------------------------------------------------------ the evidence order
# Which of two reports of an SMS's status wins: a terminal status, then the later
# time, the later step of the lifecycle, then the status's name (and the provider's
# word) in byte order, so that any order of arrival ends on the same one. Written
# once for Python (`evidence_key`) and once for SQL (`evidence_terms`); a test holds
# them to each other.


def evidence_key(status: Status, at: datetime, *then: str | None) -> tuple[object, ...]:
    """The evidence order's key of `status` reported at `at` (`then`: further names
    that break a tie, as the records' provider status does)."""
    return (status in TERMINAL, at, RANK[status], status.value, *then)


def evidence_terms(terminal: str, at: str, rank: str, status: str, *then: str) -> list[str]:
    """The same order in SQL, most significant first, given the columns (or
    expressions) that hold each part: names compare in the "C" collation, as Python
    compares strings. Compare two as row values; sort by each term."""
    return [terminal, at, rank, f'{status}::text COLLATE "C"', *(f'{t} COLLATE "C"' for t in then)]


def evidence_row(terminal: str, at: str, rank: str, status: str, *then: str) -> str:
    """`evidence_terms` as one SQL row value, for `>`, `>=` between two of them."""
    return f"({', '.join(evidence_terms(terminal, at, rank, status, *then))})"
