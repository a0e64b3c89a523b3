"""A failover's figures: events sent, answered 2xx, found on the promoted standby, and the
seconds without a 2xx, with a synchronous standby and with an asynchronous one.

Each run: a primary and its standby of their own (initdb, pg_basebackup), `receiver
serve` given both in one URL, webhooks at `--rate` a second; the primary stopped with
`-m immediate` after `--before` seconds, the standby promoted `--detect` seconds
later, traffic on for `--after` seconds (testkit/failover.py).

    .venv/bin/python bench/failover.py [--runs 3] [--rate 50] [--detect 1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.failover import run_failover


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--detect", type=float, default=1.0)
    parser.add_argument("--before", type=float, default=4.0)
    parser.add_argument("--after", type=float, default=8.0)
    args = parser.parse_args()
    for synchronous in (True, False):
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as folder:
                run = await run_failover(
                    Path(folder),
                    synchronous=synchronous,
                    rate=args.rate,
                    before=args.before,
                    after=args.after,
                    detect=args.detect,
                )
            print(run.line(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
