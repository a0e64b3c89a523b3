"""The statuses of an SMS, in CALLR's v2 vocabulary: the receiver's own, from which
every layer reads (CALLR's v1 names map onto them in callr/sms.py)."""

from __future__ import annotations

import enum


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
