from __future__ import annotations

import asyncio
import io
import json
import re
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


REQUEST_LINES = """
import sys
import structlog
from receiver.logging import RequestLog, configure_logging, flush_logs
configure_logging(fmt=sys.argv[1], level=sys.argv[2])
fields = {"new_delivery": True, "event_id": "e1:0", "type": "sms.mo", "try": 0,
          "latency_ms": 1.25, "client": None, "text": "caf\\u00e9 \\u2603"}
for level in ("info", "warning"):
    RequestLog("receiver.webhook").line(level, "webhook", dict(fields))
    getattr(structlog.get_logger("receiver.webhook"), level)("webhook", **fields)
flush_logs()
"""


def request_lines(fmt: str, level: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", REQUEST_LINES, fmt, level],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def test_a_request_line_is_the_line_structlog_writes() -> None:
    lines = request_lines("json", "info")
    assert len(lines) == 4
    for ours, structlogs in (lines[0:2], lines[2:4]):
        # The same keys in the same order, the same values but for the moment written.
        ours_doc, theirs_doc = json.loads(ours), json.loads(structlogs)
        assert list(ours_doc) == list(theirs_doc)
        assert ours_doc.pop("timestamp")[:19] == theirs_doc.pop("timestamp")[:19]
        assert ours_doc == theirs_doc
        assert re.fullmatch(r'.*"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z"}', ours)
    assert json.loads(lines[0])["level"] == "info"
    assert json.loads(lines[2])["level"] == "warning"


def test_a_request_line_below_the_level_is_not_written() -> None:
    lines = request_lines("json", "warning")
    assert [json.loads(line)["level"] for line in lines] == ["warning", "warning"]


def test_a_request_line_in_the_console_format_goes_through_structlog() -> None:
    lines = request_lines("console", "info")
    assert len(lines) == 4
    assert all("webhook" in line and "e1:0" in line for line in lines)
    assert all(not line.startswith("{") for line in lines)
