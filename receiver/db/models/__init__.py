"""The schema of record, a module per part of the data path. Alembic migrations are
generated from and checked against these models; every table is on `Base.metadata`
once this package is imported."""

from receiver.db.models.access import ApiToken, AuthFailure, ConsoleSession, DeploymentKey
from receiver.db.models.base import NAMING_CONVENTION, Base
from receiver.db.models.callr import CallrRate, CallrSubscription, Reconciliation
from receiver.db.models.events import Delivery, Event, EventState, PendingEvent, ProjectionProgress
from receiver.db.models.forwarding import (
    Forward,
    ForwardAttempt,
    ForwardState,
    Handler,
    HandlerNotice,
)
from receiver.db.models.messages import Message, Observation, Transition
from receiver.db.models.schema import SchemaCompatibility
from receiver.db.models.sending import Send, SendClaim
from receiver.db.models.stats import Prune, StatsChange, StatsDay, StatsRow

__all__ = [
    "NAMING_CONVENTION",
    "ApiToken",
    "AuthFailure",
    "Base",
    "CallrRate",
    "CallrSubscription",
    "ConsoleSession",
    "Delivery",
    "DeploymentKey",
    "Event",
    "EventState",
    "Forward",
    "ForwardAttempt",
    "ForwardState",
    "Handler",
    "HandlerNotice",
    "Message",
    "Observation",
    "PendingEvent",
    "ProjectionProgress",
    "Prune",
    "Reconciliation",
    "SchemaCompatibility",
    "Send",
    "SendClaim",
    "StatsChange",
    "StatsDay",
    "StatsRow",
    "Transition",
]
