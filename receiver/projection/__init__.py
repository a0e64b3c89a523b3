"""The projection: what the stored events say about each SMS, built behind the answer.

`records` applies a batch of events to the message records, their history and the
evidence behind them; `projector` takes the events that wait for it and applies
them, exactly once each, in every `receiver serve` process and `receiver worker`.
"""

from receiver.projection.records import Report, evidence_key, project, report_of

__all__ = ["Report", "evidence_key", "project", "report_of"]
