"""Garbage collection tuned for a process that makes many short-lived objects.

Webhook handling and replays make millions of small objects (parsed events,
tuples, datetimes) that reference counting frees; none form cycles. The cyclic
collector still ran every 700 allocations and, at every full collection, walked
every object alive, the startup's modules and tables included. Measured on the
rebuild benchmark: 30% of the process's CPU with the defaults (docs/performance.md).
"""

from __future__ import annotations

import gc

# Allocations between young collections (the default is 700); the older
# generations keep their default ratios.
YOUNG_THRESHOLD = 20_000


def settle_after_startup() -> None:
    """Move what startup made out of the collector's sight, and collect less often.

    Called once the process is ready (modules imported, pools open): those objects
    live as long as the process, so no collection ever needs to look at them again.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
