"""Throttling token guesses: the console's sign-in and the API's bearer tokens.

Each failure is counted per client address (an IPv6 address by its /64, which one
client holds whole) in PostgreSQL, so that every process of the deployment shares
the count: `PER_ADDRESS` failures in a `WINDOW` and the address waits for the
window's end (429 with `Retry-After`). The try is counted before the token is
checked, and given back when the token was right: a burst of parallel guesses is
counted whole, and none past the limit is checked at all. Only the address that
failed waits: a right token from any other address works however many others fail.

The client address is the connection's peer, or what X-Forwarded-For says when the
peer is one of `RECEIVER_TRUSTED_PROXIES` (uvicorn applies it): a header from anyone
else changes nothing.
"""

from __future__ import annotations

import ipaddress
import math
import time

from receiver.db.engine import Connection, one_row

PER_ADDRESS = 5
WINDOW = 60.0

# One row an address: the failures of its current window. The window starts again
# once it is over; the statement counts atomically across processes.
_CHARGE = """
INSERT INTO auth_failures AS f (address, window_start, failures) VALUES ($1, now(), 1)
ON CONFLICT (address) DO UPDATE SET
    window_start = CASE WHEN f.window_start <= now() - make_interval(secs => $2)
                        THEN now() ELSE f.window_start END,
    failures = CASE WHEN f.window_start <= now() - make_interval(secs => $2)
                    THEN 1 ELSE f.failures + 1 END
RETURNING failures,
    extract(epoch FROM f.window_start + make_interval(secs => $2) - now()) AS left_s
"""
_REFUND = "UPDATE auth_failures SET failures = greatest(failures - 1, 0) WHERE address = $1"
_FORGET = "DELETE FROM auth_failures WHERE window_start < now() - make_interval(secs => $1 * 10)"


def client_key(address: str) -> str:
    """What failures are counted under: the address, or its /64 for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class Throttle:
    """Counts token guesses per client address, in the database."""

    def __init__(self, per_address: int = PER_ADDRESS, window: float = WINDOW) -> None:
        self.per_address = per_address
        self.window = window
        self._forgot_at = time.monotonic()

    async def charge(self, conn: Connection, address: str) -> int | None:
        """Count a try from `address`; the seconds it must wait when it is past the limit
        (the token must then not be checked), None when it may go on. Now and then (every
        ten windows, in each process) the rows of windows long over are dropped first."""
        if time.monotonic() - self._forgot_at > 10 * self.window:
            self._forgot_at = time.monotonic()
            await conn.execute(_FORGET, self.window)
        row = await one_row(conn, _CHARGE, client_key(address), self.window)
        if row["failures"] <= self.per_address:
            return None
        return max(1, math.ceil(float(row["left_s"])))

    async def refund(self, conn: Connection, address: str) -> None:
        """The try was a right token: it does not count."""
        await conn.execute(_REFUND, client_key(address))
