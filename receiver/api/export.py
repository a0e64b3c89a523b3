"""Every message a search chooses, as CSV or NDJSON, streamed in constant memory.

The rows are those of the search's own statement (receiver.api.queries) with no
page, read from one snapshot (a read-only repeatable-read transaction) by a cursor,
`BATCH` rows at a time, each batch written out before the next is read: the file is
the search as it stood when the export began, whatever changes meanwhile. The API's
`GET /api/v1/messages/export` and the console's "Export CSV" both serve it; the
console's masks what it masks.
"""

from __future__ import annotations

import csv
import io
import operator
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from receiver.db.engine import Pool, Record
from receiver.db.replica import Reads

# One row an SMS: these columns, in this order (the CSV's header row, the NDJSON's keys).
COLUMNS = (
    "id",
    "direction",
    "from",
    "to",
    "user_data",
    "status",
    "status_at",
    "created_at",
    "sent_at",
    "delivered_at",
    "network",
    "parts",
    "encoding",
    "cost",
    "cost_unit",
    "text",
)
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
# Rows a cursor reads at once, and written out together.
BATCH = 1000

Row = dict[str, object]


@dataclass(frozen=True, slots=True)
class Selection:
    """A statement that lists messages, and its arguments."""

    sql: str
    args: tuple[object, ...]


def export_row(record: Record) -> Row:
    """A message's row. Its cost in the unit CALLR gave it: `cents` (v2's `cost`), or
    `b_customer_debit` (v1's, whose unit CALLR does not document)."""
    if record["cost_cents"] is not None:
        cost, unit = str(record["cost_cents"]), "cents"
    elif record["cost"] is not None:
        cost, unit = str(record["cost"]), "b_customer_debit"
    else:
        cost, unit = None, None
    return {
        "id": record["sms_id"],
        "direction": record["direction"],
        "from": record["from_number"],
        "to": record["to_number"],
        "user_data": record["user_data"],
        "status": record["status"],
        "status_at": _time(record["status_at"]),
        "created_at": _time(record["created_at"]),
        "sent_at": _time(record["sent_at"]),
        "delivered_at": _time(record["delivered_at"]),
        "network": record["network"],
        "parts": record["parts"],
        "encoding": record["encoding"],
        "cost": cost,
        "cost_unit": unit,
        "text": record["text"],
    }


def _time(value: datetime | None) -> str | None:
    """A time as the API writes it (ISO 8601 with its zone)."""
    return None if value is None else value.isoformat()


_CELLS = operator.itemgetter(*COLUMNS)


def _csv(rows: list[Row], *, header: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)  # None is an empty cell
    if header:
        writer.writerow(COLUMNS)
    writer.writerows(map(_CELLS, rows))
    return out.getvalue().encode()


def _ndjson(rows: list[Row]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


async def _batches(reads: Reads | Pool, selection: Selection) -> AsyncIterator[list[Record]]:
    async with (
        reads.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        cursor = await conn.cursor(selection.sql, *selection.args)
        while batch := await cursor.fetch(BATCH):
            yield batch


async def _written(
    reads: Reads | Pool, selection: Selection, form: str, shown: Callable[[Row], Row]
) -> AsyncIterator[bytes]:
    if form == "csv":
        # The header goes out even when nothing matches.
        yield _csv([], header=True)
    async for batch in _batches(reads, selection):
        rows = [shown(export_row(record)) for record in batch]
        yield _csv(rows, header=False) if form == "csv" else _ndjson(rows)


def export_response(
    request: Request,
    reads: Reads | Pool,
    selection: Selection,
    form: str,
    *,
    shown: Callable[[Row], Row] = lambda row: row,
) -> Response:
    """The streamed file of `selection`'s messages in `form` (csv or ndjson); `shown`:
    what a row becomes on the way out (the console's mask). HEAD gets the headers alone,
    with nothing read."""
    name = f"messages-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{form}"
    headers = {"content-disposition": f'attachment; filename="{name}"'}
    if request.method == "HEAD":
        return Response(media_type=MEDIA_TYPES[form], headers=headers)
    return StreamingResponse(
        _written(reads, selection, form, shown), media_type=MEDIA_TYPES[form], headers=headers
    )
