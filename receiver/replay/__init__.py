"""Stored events through the projector's code again: replay, rebuild, and resend.

`replay` parses selected events anew and applies them; `rebuild` empties the
projection and applies every event, a range of SMS per child process (`workers`);
`resend` posts stored events, byte for byte, to another receiver.
"""

from receiver.replay.paging import FILTER_SQL, EventFilter, count
from receiver.replay.rebuild import RebuildRefused, rebuild, replay_range
from receiver.replay.replay import ReplaySummary, StopFlag, replay

__all__ = [
    "FILTER_SQL",
    "EventFilter",
    "RebuildRefused",
    "ReplaySummary",
    "StopFlag",
    "count",
    "rebuild",
    "replay",
    "replay_range",
]
