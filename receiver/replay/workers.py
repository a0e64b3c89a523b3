"""A rebuild's ranges of SMS replayed in child processes, one range each.

Replaying is half Python (parsing, building each page's statements) and half
PostgreSQL. In one process the two take turns on one thread: while it parses, the
database waits for its next statement, and both cores were about 80% busy. In a
process per range, a range's Python runs while another's statements run, and on
two cores the rebuild went 8 to 22% faster (docs/performance.md).

The children are forked before the parent starts its event loop or opens a
connection, so they share nothing that is in use and start at once (spawned, they
spent most of a second importing, as long as a rebuild of 100,000 events saves).
Each then waits for one range, replays it with the same code as in one process,
and reports its progress and summary on a queue. Ctrl-C reaches the whole process
group: the children ignore it and stop when the parent's stop flag is set, after
the page in hand, like a replay in one process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import queue
import signal
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from receiver import heap
from receiver.db.engine import create_pool
from receiver.logging import flush_logs
from receiver.replay.rebuild import replay_range
from receiver.replay.replay import ReplaySummary, StopFlag

# A range of SMS ids, [low, high), None for unbounded.
Range = tuple[str | None, str | None]


@dataclasses.dataclass(frozen=True)
class _Task:
    """What the parent sends a child (None instead: nothing to do)."""

    url: str
    bounds: Range
    batch: int
    command_timeout: float


class WorkerFailed(Exception):
    """A child process could not replay its range; its error is the message."""


class RangeWorkers:
    """`count` child processes, started now, each waiting for one range to replay.

    Make them before any event loop runs in this process: a forked child must not
    inherit a running loop or open connections.
    """

    def __init__(self, count: int) -> None:
        context = (
            multiprocessing.get_context("fork")
            if "fork" in multiprocessing.get_all_start_methods()
            else multiprocessing.get_context("spawn")
        )
        self._stop = context.Event()
        self._reports: multiprocessing.Queue[tuple[int, str, Any]] = context.Queue()
        self._tasks: list[multiprocessing.Queue[_Task | None]] = []
        self._processes: list[BaseProcess] = []
        for number in range(count):
            tasks: multiprocessing.Queue[_Task | None] = context.Queue()
            process = context.Process(
                target=_child,
                args=(number, tasks, self._reports, self._stop),
                name=f"receiver-rebuild-{number}",
                daemon=True,
            )
            process.start()
            self._tasks.append(tasks)
            self._processes.append(process)

        self._target: tuple[str, int, float] | None = None

    def use(self, url: str, *, batch: int, command_timeout: float) -> RangeWorkers:
        """Where and how the children replay (known once the database is open); self."""
        self._target = (url, batch, command_timeout)
        return self

    async def replay(
        self,
        ranges: Sequence[Range],
        *,
        advance: Callable[[int], None],
        stop: StopFlag | None,
    ) -> list[ReplaySummary]:
        """Replay each range in its own child; their summaries, in the ranges' order.

        There may be fewer ranges than children (fewer distinct SMS than jobs): the
        others are let go.
        """
        if self._target is None:
            raise RuntimeError("RangeWorkers.use() was not called: no database to replay on")
        if len(ranges) > len(self._processes):
            raise ValueError(f"{len(ranges)} ranges for {len(self._processes)} workers")
        url, batch, command_timeout = self._target
        # Told to stop before the ranges are handed out, no child may start a page.
        self._pass_on(stop)
        for number, tasks in enumerate(self._tasks):
            work = _Task(url, ranges[number], batch, command_timeout)
            tasks.put(work if number < len(ranges) else None)
        summaries: dict[int, ReplaySummary] = {}
        while len(summaries) < len(ranges):
            self._pass_on(stop)
            try:
                number, kind, value = self._reports.get_nowait()
            except queue.Empty:
                self._check_alive(len(ranges), summaries)
                await asyncio.sleep(0.05)
                continue
            if kind == "progress":
                advance(value)
            elif kind == "done":
                summaries[number] = ReplaySummary(**value)
            else:
                raise WorkerFailed(f"rebuild worker {number}: {value}")
        return [summaries[number] for number in range(len(ranges))]

    def _pass_on(self, stop: StopFlag | None) -> None:
        if stop is not None and stop.is_set():
            self._stop.set()

    def _check_alive(self, working: int, finished: dict[int, ReplaySummary]) -> None:
        for number, process in enumerate(self._processes[:working]):
            # A child that ended may have left its last reports in the queue: they
            # are read before it counts as lost.
            lost = number not in finished and not process.is_alive()
            if lost and self._reports.empty():
                raise WorkerFailed(f"rebuild worker {number} exited with code {process.exitcode}")

    def close(self) -> None:
        """Stop the children that are still waiting or working, and wait for them."""
        self._stop.set()
        for tasks, process in zip(self._tasks, self._processes, strict=True):
            if process.is_alive():
                tasks.put(None)
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()


def _child(
    number: int,
    tasks: multiprocessing.Queue[_Task | None],
    reports: multiprocessing.Queue[tuple[int, str, Any]],
    stop: StopFlag,
) -> None:
    # Ctrl-C goes to the whole process group: the parent decides, through `stop`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    task = tasks.get()
    if task is None:
        return

    def advance(n: int) -> None:
        reports.put((number, "progress", n))

    try:
        summary = asyncio.run(_replay(task, stop, advance))
    except Exception as error:  # reported to the parent, which raises it
        reports.put((number, "failed", f"{type(error).__name__}: {error}"))
        return
    finally:
        flush_logs()  # a forked child ends with os._exit, which skips atexit
    reports.put((number, "done", dataclasses.asdict(summary)))


async def _replay(task: _Task, stop: StopFlag, advance: Callable[[int], None]) -> ReplaySummary:
    # One connection reads the next page while another applies the current one.
    pool = await create_pool(
        task.url, size=2, command_timeout=task.command_timeout, session_state=False
    )
    try:
        heap.settle_after_startup()
        return await replay_range(pool, task.bounds, batch=task.batch, advance=advance, stop=stop)
    finally:
        await pool.close()
