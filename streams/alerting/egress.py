"""Where webhooks may go: public addresses only, unless an operator allows a network.

A standing query's webhook URL is user input, and the worker that POSTs it sits inside the
deployment: without a guard, `http://169.254.169.254/` (cloud metadata), `127.0.0.1:6379`
(Redis) or `10.0.0.5` would be reachable by anyone who may register a query. So every
address a webhook connects to is checked AT CONNECT TIME (the resolver of the webhook
HTTP client refuses, so a DNS answer that changes between check and connect changes
nothing): loopback, private, link-local, multicast, reserved and unspecified addresses are
refused unless inside `LOOKOUT_WEBHOOK_ALLOW_NETWORKS` (comma-separated CIDRs). Spellings
such as `2130706433` or `0x7f.1` resolve to 127.0.0.1 and are refused like it. Redirects
are not followed (a public host could redirect inward).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from streams.core.errors import LookoutError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressRefused(LookoutError):
    """A webhook address is internal and not allowed by LOOKOUT_WEBHOOK_ALLOW_NETWORKS."""


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses webhooks may reach: public ones, plus the `allow`ed networks."""

    allow: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, networks: str | Iterable[str]) -> EgressPolicy:
        items = networks.split(",") if isinstance(networks, str) else list(networks)
        return cls(tuple(ipaddress.ip_network(n.strip(), strict=False)
                         for n in items if n.strip()))

    def check(self, address: str, what: str = "") -> None:
        """Raise EgressRefused unless `address` (an IP) may be reached."""
        ip = _embedded_ipv4(ipaddress.ip_address(address.split("%")[0]))
        if ip.is_global and not ip.is_multicast and ip not in _SITE_LOCAL:
            return
        if any(ip in net for net in self.allow):
            return
        raise EgressRefused(
            f"webhook {what or address} resolves to {ip}, an internal address; allow its "
            "network with LOOKOUT_WEBHOOK_ALLOW_NETWORKS if that is intended")

    def check_url(self, url: str) -> None:
        """Refuse a URL whose host is an internal IP literal (these skip the resolver). The
        host is read the way the HTTP client reads it (yarl normalises e.g. full-width
        digits to ASCII), so no spelling slips past as a "name"."""
        host = URL(url).raw_host or ""
        try:
            ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            if host and (":" in host or host.replace(".", "").isdigit()):
                raise EgressRefused(f"webhook {url}: {host!r} is not a usable address") from None
            return  # a name: checked by GuardedResolver when the client connects
        self.check(host, url)


_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address
                   ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, compatible), if any:
    `::ffff:127.0.0.1`, `2002:a9fe:a9fe::` and `64:ff9b::a9fe:a9fe` reach IPv4 hosts."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that resolves as usual, then refuses internal addresses."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner  # the default one needs a running loop: made on first use

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        if self.inner is None:
            self.inner = ThreadedResolver()
        results = await self.inner.resolve(host, port, family)
        for r in results:
            self.policy.check(r["host"], host)
        return results

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()
