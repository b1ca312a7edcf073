"""Which rest-hook endpoints the server may call (SSRF defence), decided on resolved addresses.

A subscription names a URL; the server would otherwise POST to whatever it points at: the
database next door, a cloud metadata service, the admin port of a router. So:

* the host is resolved, and **every** address it resolves to must be allowed, else the endpoint
  is refused (at creation, 422, and again before every delivery: DNS may change);
* an address is allowed when it is globally routable (not loopback, private, link-local, cloud
  metadata, CGNAT, multicast, reserved, unspecified; IPv4-mapped IPv6 judged as its IPv4), or
  when it lies in ``FHIR_SUBSCRIPTION_ALLOWED_NETWORKS`` (comma-separated CIDRs: a clinic LAN,
  the tests' ``127.0.0.1/32``);
* ``http://`` only when every address lies in those allowed networks (a LAN): on the internet
  notifications travel over TLS;
* the delivery connects to the address that was checked (``delivery.py``: no second lookup that
  a rebinding DNS could answer differently) and never follows redirects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ranges the ``is_*`` properties miss or that must be refused even if "global"
_ALWAYS_REFUSED: tuple[Network, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),  # CGNAT (carrier-grade NAT), shared address space
    ipaddress.ip_network("169.254.0.0/16"),  # link-local: cloud metadata at 169.254.169.254
    ipaddress.ip_network("fd00:ec2::/32"),  # AWS metadata over IPv6 (inside fc00::/7 anyway)
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64: reaches IPv4 addresses that were not checked
    ipaddress.ip_network("2002::/16"),  # 6to4: embeds an IPv4 address
)


def parse_networks(text: str) -> tuple[Network, ...]:
    """``FHIR_SUBSCRIPTION_ALLOWED_NETWORKS``: comma-separated CIDRs (ValueError when one is not)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def _in(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def in_allowed_networks(address: Address, allowed: tuple[Network, ...]) -> bool:
    if _in(address, allowed):
        return True
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped is not None and _in(mapped, allowed)


def is_public(address: Address) -> bool:
    """Globally routable and none of the ranges an outside party must never make us call."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return is_public(mapped)
    if _in(address, _ALWAYS_REFUSED):
        return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


@dataclass(frozen=True)
class Target:
    """A checked endpoint: connect to ``address`` (never resolve ``host`` again)."""

    scheme: str
    host: str
    port: int
    address: Address
    #: path and query of the endpoint URL
    path: str


class Refused(ValueError):
    """The endpoint may not be called (the message says why, without secrets)."""


def split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path+query) of an http(s) URL; Refused otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused("the endpoint must be an http: or https: URL")
    if not parts.hostname:
        raise Refused("the endpoint URL has no host")
    if parts.username or parts.password:
        raise Refused("the endpoint URL may not carry user information (use channel.header)")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def decide(url: str, addresses: list[Address], allowed: tuple[Network, ...]) -> Target:
    """The :class:`Target` to connect to, when ``url`` resolved to ``addresses`` may be called;
    Refused otherwise. Pure: the unit under test for any address."""
    scheme, host, port, path = split(url)
    if not addresses:
        raise Refused(f"{host} does not resolve")
    lan = all(in_allowed_networks(a, allowed) for a in addresses)
    if not lan:
        bad = [a for a in addresses if not in_allowed_networks(a, allowed) and not is_public(a)]
        if bad:
            raise Refused(
                f"{host} resolves to {bad[0]}, a loopback, private, link-local or otherwise non-public address "
                "outside FHIR_SUBSCRIPTION_ALLOWED_NETWORKS"
            )
        if scheme != "https":
            raise Refused("http: endpoints are allowed only inside FHIR_SUBSCRIPTION_ALLOWED_NETWORKS; use https:")
    return Target(scheme, host, port, addresses[0], path)


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (a literal address as itself)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    found: list[Address] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


async def check(url: str, allowed: tuple[Network, ...]) -> Target:
    """Resolve and decide (Refused when not allowed)."""
    _, host, port, _ = split(url)
    return decide(url, await resolve(host, port), allowed)
