"""Fill a database with realistic message records through the real projection code.

Many networks and user_data values, every status in realistic proportions with its
history, 10% inbound, spread over 90 days. Each SMS is one snapshot carrying its
whole history, applied with `receiver.projection.project` in batches, as live
ingest would apply it.

    .venv/bin/python bench/seed.py --database-url URL --messages 10000000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.callr.sms import Snapshot, Transition
from receiver.db.engine import create_pool
from receiver.projection.records import project
from receiver.reports import Report
from receiver.status import Status

END = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 90
NETWORKS = [f"208{n:02d}" for n in range(1, 21)] + [f"2{n:02d}01" for n in range(20)]
USER_DATA = [f"campaign-{n}" for n in range(200)] + [f"team-{n}" for n in range(100)]
# Where outbound SMS end up, in proportion.
ENDINGS = [
    ((Status.CREATED, Status.PENDING, Status.SENT, Status.REMOTE_QUEUED, Status.DELIVERED), 84),
    ((Status.CREATED, Status.PENDING, Status.SENT, Status.DELIVERED), 4),
    ((Status.CREATED, Status.PENDING, Status.SENT, Status.REMOTE_QUEUED, Status.FAILED), 4),
    ((Status.CREATED, Status.PENDING, Status.SENT, Status.REMOTE_QUEUED, Status.EXPIRED), 3),
    ((Status.CREATED, Status.ERROR), 1),
    ((Status.CREATED, Status.PENDING, Status.SENT), 2),
    ((Status.CREATED, Status.PENDING, Status.SENT, Status.REMOTE_QUEUED), 2),
]
_PATHS = [path for path, _ in ENDINGS]
_WEIGHTS = [weight for _, weight in ENDINGS]


def snapshots(
    count: int, *, seed: int, offset: int = 0, end: datetime = END, days: float = DAYS
) -> Iterator[Report]:
    """`count` SMS created in the `days` before `end`, each as one snapshot with its history."""
    rng = random.Random(seed)
    for n in range(offset, offset + count):
        inbound = rng.random() < 0.1
        created = end - timedelta(seconds=rng.randrange(int(days * 86400)))
        if inbound:
            path: tuple[Status, ...] = (Status.CREATED, Status.DELIVERED)
            gaps = [0]
        else:
            path = rng.choices(_PATHS, _WEIGHTS)[0]
            gaps = [rng.randint(0, 3) if k < 3 else rng.randint(1, 600) for k in range(len(path))]
        times = [created]
        for gap in gaps[: len(path) - 1]:
            times.append(times[-1] + timedelta(seconds=gap))
        history = tuple(
            Transition(before=a, after=b, at=t)
            for a, b, t in zip(path, path[1:], times[1:], strict=False)
        )
        status, at = path[-1], times[-1]
        sent = next((t for s, t in zip(path, times, strict=True) if s is Status.SENT), None)
        sms = Snapshot(
            sms_id=f"s{n:09d}",
            direction="inbound" if inbound else "outbound",
            from_number=f"+336{rng.randrange(10**8):08d}" if inbound else "SMS",
            to_number="+33644630010" if inbound else f"+336{rng.randrange(10**8):08d}",
            text="Your code is 482913" if not inbound else "YES",
            user_data=None if inbound else rng.choice(USER_DATA[: rng.choice((10, 50, 300))]),
            encoding="gsm",
            parts=1,
            cost=Decimal("4.50"),
            cost_cents=None,
            network=rng.choice(NETWORKS),
            nature="alerting",
            error="rejected" if status in (Status.FAILED, Status.ERROR) else None,
            created_at=created,
            sent_at=sent,
            delivered_at=at if status is Status.DELIVERED else None,
            status=status,
            provider_status=status.value,
            status_at=at,
            history=history,
        )
        yield Report(event_id=f"seed-{n}", received_at=at, emitted_at=at, sms=sms)


async def seed(
    url: str,
    messages: int,
    *,
    batch: int,
    seed_value: int,
    offset: int,
    end: datetime = END,
    days: float = DAYS,
) -> float:
    pool = await create_pool(url, size=2, command_timeout=600)
    started = time.perf_counter()
    done = 0
    try:
        async with pool.acquire() as conn:
            pending: list[Report] = []
            for report in snapshots(messages, seed=seed_value, offset=offset, end=end, days=days):
                pending.append(report)
                if len(pending) == batch:
                    async with conn.transaction():
                        await project(conn, pending)
                    done += len(pending)
                    pending = []
                    if done % 200_000 == 0:
                        rate = done / (time.perf_counter() - started)
                        print(f"  {done:,} messages, {rate:,.0f}/s", flush=True)
            if pending:
                async with conn.transaction():
                    await project(conn, pending)
    finally:
        await pool.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--offset", type=int, default=0, help="first SMS number (for parallel runs)"
    )
    parser.add_argument(
        "--end",
        type=datetime.fromisoformat,
        default=END,
        help="the SMS are created before this time (ISO 8601 with a zone)",
    )
    parser.add_argument("--days", type=float, default=DAYS, help="over this many days")
    args = parser.parse_args()
    elapsed = asyncio.run(
        seed(
            args.database_url,
            args.messages,
            batch=args.batch,
            seed_value=args.seed,
            offset=args.offset,
            end=args.end,
            days=args.days,
        )
    )
    print(
        f"seeded {args.messages:,} messages in {elapsed:.0f} s ({args.messages / elapsed:,.0f}/s)"
    )


if __name__ == "__main__":
    main()
