"""Where forwards may go: the addresses a handler URL may name, checked twice.

Handlers are internal services, so private addresses are the point and stay
allowed. Refused by default: link-local addresses (`169.254.0.0/16`, where clouds
serve their metadata and credentials; `fe80::/10`), the metadata services outside
it (AWS's `fd00:ec2::254`, Alibaba's `100.100.100.200`), unspecified and "this
network" addresses (`0.0.0.0/8`, `::`), the receiver's own database (its host and
port), and every IPv6 form of a refused IPv4 address (mapped, NAT64, 6to4, Teredo,
IPv4-compatible).
`RECEIVER_HANDLER_ALLOWED_NETWORKS` narrows further: when set, a handler's address
must be in one of those networks.

A URL is checked when the handler is registered (an address written in it, or
what its name resolves to then), and again before every forward (what the name
resolves to now): a name that later resolves somewhere refused is refused then,
and the forward's error says why. The connection resolves the name once more,
so a name whose answer changes within those milliseconds is not caught.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from receiver.db.engine import hosts

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_REFUSED: tuple[tuple[Network, str], ...] = (
    (ipaddress.ip_network("169.254.0.0/16"), "link-local (cloud metadata)"),
    (ipaddress.ip_network("fe80::/10"), "link-local"),
    (ipaddress.ip_network("0.0.0.0/8"), "unspecified"),
    (ipaddress.ip_network("::/128"), "unspecified"),
    # Clouds' metadata services outside the link-local range.
    (ipaddress.ip_network("fd00:ec2::254/128"), "a cloud metadata service (AWS, IPv6)"),
    (ipaddress.ip_network("100.100.100.200/32"), "a cloud metadata service (Alibaba)"),
)
# IPv6 addresses that carry an IPv4 one (NAT64's well-known and local prefixes, and
# the deprecated IPv4-compatible form): the IPv4 address is checked as itself.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_RESOLVE_SECONDS = 5.0


class DestinationRefused(ValueError):
    """A handler URL that names, or resolves to, an address forwards may not go to."""


@dataclass(frozen=True, slots=True)
class Destinations:
    """The rules for handler addresses; `check` a URL, or `check_now` what it resolves to."""

    allowed: tuple[Network, ...] = ()
    """When not empty, the only networks a handler's address may be in."""
    database: tuple[tuple[frozenset[IPAddress], int], ...] = ()
    """The database's addresses and port: no forward goes there."""

    @classmethod
    def of(cls, allowed: Iterable[str], *database_urls: str | None) -> Destinations:
        """The rules from the settings: the allowed networks and the database's URLs (the
        primary, a pooler's server, a replica)."""
        networks = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in allowed)
        database = tuple(e for url in database_urls for e in _database_endpoint(url))
        return cls(allowed=networks, database=database)

    def refusal(self, address: IPAddress, port: int) -> str | None:
        """Why a forward may not go to `address`:`port`; None when it may. An IPv6
        address that carries an IPv4 one is refused when that one would be."""
        for embedded in _embedded_ipv4(address):
            reason = self.refusal(embedded, port)
            if reason is not None:
                return f"{address} ({reason})"
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        for network, kind in _REFUSED:
            if address in network:
                return f"{address} is {kind}"
        for addresses, database_port in self.database:
            # The loopback names one machine: any loopback address at that port is it.
            same = address in addresses or (
                address.is_loopback and any(a.is_loopback for a in addresses)
            )
            if port == database_port and same:
                return f"{address}:{port} is the receiver's own database"
        if self.allowed and not any(address in network for network in self.allowed):
            return f"{address} is outside RECEIVER_HANDLER_ALLOWED_NETWORKS"
        return None

    def check(self, url: str) -> None:
        """Raise `DestinationRefused` for a URL with credentials or a refused address in it."""
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise DestinationRefused(
                "url must not carry credentials (user:password@): they would be logged and"
                " shown; give the handler a signing secret (secret) and check the signature"
            )
        host, port = parts.hostname or "", _port(parts.scheme, parts.port)
        literal = _literal(host)
        if literal is not None:
            reason = self.refusal(literal, port)
            if reason is not None:
                raise DestinationRefused(f"url: forwards may not go to {reason}")

    async def check_now(self, url: str, *, unresolved_ok: bool = False) -> str | None:
        """Why a forward to `url` may not go now (its name resolved, every address checked).

        `unresolved_ok`: a name that does not resolve (yet: at registration, say) passes.
        """
        parts = urlsplit(url)
        host, port = parts.hostname or "", _port(parts.scheme, parts.port)
        try:
            addresses = await _resolve(host, port)
        except (OSError, TimeoutError, UnicodeError) as error:
            if unresolved_ok:
                return None
            return f"the handler's host {host!r} does not resolve: {error}"
        for address in addresses:
            reason = self.refusal(address, port)
            if reason is not None:
                return f"refused: the handler's address {reason}"
        return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one carries: mapped (`::ffff:a.b.c.d`), NAT64
    (`64:ff9b::a.b.c.d`), 6to4 (`2002:AABB:CCDD::`), Teredo's client, IPv4-compatible."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in _NAT64) or (
        address in _IPV4_COMPATIBLE and int(address) > 1
    ):
        found.append(low32)
    return found


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _resolve(host: str, port: int) -> set[IPAddress]:
    literal = _literal(host)
    if literal is not None:
        return {literal}
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(_RESOLVE_SECONDS):
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return {ipaddress.ip_address(info[4][0]) for info in found}


def _database_endpoint(url: str | None) -> tuple[tuple[frozenset[IPAddress], int], ...]:
    """The database's addresses and port for each host it names over TCP (Unix sockets
    left out; several hosts: a primary and its standbys)."""
    if not url:
        return ()
    found = []
    for host, port in hosts(url):
        literal = _literal(host)
        if literal is not None:
            found.append((frozenset({literal}), port))
            continue
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            continue
        found.append((frozenset(ipaddress.ip_address(info[4][0]) for info in infos), port))
    return tuple(found)
