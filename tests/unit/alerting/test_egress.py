"""The webhook SSRF guard: internal addresses are refused, however they are spelled,
unless an operator allows their network."""

from __future__ import annotations

import asyncio
import socket

import pytest

from streams.alerting.egress import EgressPolicy, EgressRefused, GuardedResolver
from streams.queries.model import Webhook

INTERNAL = ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "::1",
            "fe80::1", "fc00::1", "0.0.0.0", "100.64.0.1", "224.0.0.1", "::ffff:127.0.0.1"]


@pytest.mark.parametrize("address", INTERNAL)
def test_internal_addresses_are_refused(address: str) -> None:
    with pytest.raises(EgressRefused, match="internal address"):
        EgressPolicy().check(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1"])
def test_public_addresses_pass(address: str) -> None:
    EgressPolicy().check(address)


def test_an_allowed_network_passes_and_only_it() -> None:
    policy = EgressPolicy.parse("127.0.0.0/8, 10.1.0.0/16")
    policy.check("127.0.0.1")
    policy.check("10.1.2.3")
    with pytest.raises(EgressRefused):
        policy.check("10.2.0.1")


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/", "http://[::1]/x",
                                 "https://169.254.169.254/latest/meta-data"])
def test_ip_literal_urls_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(EgressRefused):
        EgressPolicy().check_url(url)


class FixedResolver:
    """Answers every name with fixed addresses (what a hostile DNS would do)."""

    def __init__(self, *hosts: str) -> None:
        self.hosts = hosts

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": h, "port": port, "family": family, "proto": 0,
                 "flags": 0} for h in self.hosts]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("name", ["localhost", "2130706433", "0x7f.1", "evil.example"])
def test_names_resolving_inward_are_refused_at_connect_time(name: str) -> None:
    resolver = GuardedResolver(EgressPolicy(), FixedResolver("93.184.216.34", "127.0.0.1"))
    with pytest.raises(EgressRefused, match="127.0.0.1"):
        asyncio.run(resolver.resolve(name, 80))


def test_the_real_resolver_maps_numeric_spellings_of_loopback_and_refuses_them() -> None:
    for name in ("2130706433", "0x7f.1", "localhost"):
        with pytest.raises(EgressRefused):
            asyncio.run(GuardedResolver(EgressPolicy()).resolve(name, 80))


@pytest.mark.parametrize("url", ["http://hook.example/a\r\nX-Evil: 1", "http://h.example/ a"])
def test_webhook_urls_with_control_characters_are_refused_at_registration(url: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        Webhook(url=url)


@pytest.mark.parametrize("url", [
    "http://１２７．０．０．１:6379/",               # full-width digits: yarl makes it 127.0.0.1
    "http://①⑥⑨.②⑤④.①⑥⑨.②⑤④/latest/meta-data/",
    "http://[::ffff:7f00:1]/", "http://[2002:a9fe:a9fe::]/", "http://[64:ff9b::a9fe:a9fe]/",
    "http://[fec0::1]/",
])
def test_unicode_and_ipv6_spellings_of_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused):
        EgressPolicy().check_url(url)
