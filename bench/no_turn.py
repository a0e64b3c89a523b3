"""`receiver` whose projectors do not take turns: each claims batches with SKIP LOCKED at once.

The projector takes a transaction-level advisory lock before each batch, so that one
works at a time (receiver/projection/projector.py says why). Run by
`bench/drain.py --parallel` to measure the alternative it was chosen over: every
projector at work at once, kept apart by `FOR UPDATE SKIP LOCKED` alone. Never a
way to run the service.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.projection import projector

projector._TURN = "SELECT $1::bigint IS NOT NULL"

if __name__ == "__main__":
    from receiver.cli import main

    sys.exit(main())
