from __future__ import annotations

import asyncio
import io
import subprocess
import sys

from receiver.logging import LineBuffer


class Stream(io.StringIO):
    """Standard error as the buffer sees it, counting the writes it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_lines_logged_in_one_turn_of_the_loop_are_written_together_after_it() -> None:
    stream = Stream()
    lines = LineBuffer(lambda: stream)
    for n in range(3):
        lines.write(f"request {n}")
    assert stream.getvalue() == ""
    await asyncio.sleep(0)
    assert stream.getvalue() == "request 0\nrequest 1\nrequest 2\n"
    assert stream.writes == 1
    lines.write("request 3")
    await asyncio.sleep(0)
    assert stream.getvalue().splitlines()[-1] == "request 3"


def test_a_line_logged_with_no_loop_running_is_written_at_once() -> None:
    stream = Stream()
    LineBuffer(lambda: stream).write("starting")
    assert stream.getvalue() == "starting\n"


def test_lines_held_by_a_loop_that_stopped_are_written_with_the_next_line() -> None:
    stream = Stream()
    lines = LineBuffer(lambda: stream)
    loop = asyncio.new_event_loop()

    def log_and_stop() -> None:
        lines.write("last line of the loop")
        loop.stop()  # before the turn that would have written it

    loop.call_soon(log_and_stop)
    loop.run_forever()
    loop.close()
    assert stream.getvalue() == ""
    lines.write("after the loop")
    assert stream.getvalue() == "last line of the loop\nafter the loop\n"


HELD_AT_EXIT = """
import asyncio, sys
from receiver.logging import LineBuffer
lines = LineBuffer(lambda: sys.stderr)
loop = asyncio.new_event_loop()
loop.call_soon(lambda: (lines.write("held at exit"), loop.stop()))
loop.run_forever()
"""


def test_lines_still_held_at_exit_are_written_then() -> None:
    result = subprocess.run(
        [sys.executable, "-c", HELD_AT_EXIT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "held at exit\n"
