"""`receiver serve` with the writer's database work taken out: the receiver's own ceiling.

Each batch the writer takes is answered at once as stored, without a statement
sent: the requests still go through uvicorn, the signature check, the parse, the
writer's queue, the log line and the metrics, but nothing is written. Run by
`bench/throughput.py --without-writes` to tell how much of the receiver's cost is
its own Python and how much is storing; never a way to run the service.

uvicorn spawns its workers, which run this file's top level again: each of them
is patched too.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.ingest import writer
from receiver.projection.store import Incoming, Outcome, Result


async def _answer_stored(
    self: writer.GroupCommitWriter, items: Sequence[Incoming]
) -> list[Outcome]:
    return [Outcome(Result.STORED, item.key, new_delivery=True, conflict=False) for item in items]


writer.GroupCommitWriter._transaction = _answer_stored  # type: ignore[method-assign]

if __name__ == "__main__":
    from receiver.cli import main

    sys.exit(main())
