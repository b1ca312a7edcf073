"""The SSRF address decision, as a unit on any address (no network)."""

from __future__ import annotations

import ipaddress

import pytest

from fhir_server.subscriptions.endpoints import Refused, decide, is_public, parse_networks

ip = ipaddress.ip_address
LAN = parse_networks("192.168.10.0/24, 127.0.0.1/32")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.0.0.2",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "169.254.1.1",
        "100.64.0.1",  # CGNAT
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "::",
    ],
)
def test_non_public_addresses_are_refused(address):
    assert not is_public(ip(address))
    with pytest.raises(Refused):
        decide("https://hook.example/x", [ip(address)], ())


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_over_https_are_allowed(address):
    target = decide("https://hook.example:8443/x?y=1", [ip(address)], ())
    assert target.address == ip(address) and target.host == "hook.example" and target.port == 8443 and target.path == "/x?y=1"


def test_http_is_refused_on_the_internet_but_allowed_in_allowed_networks():
    with pytest.raises(Refused, match="https"):
        decide("http://hook.example/x", [ip("93.184.216.34")], ())
    assert decide("http://emr.puskesmas.local/x", [ip("192.168.10.5")], LAN).address == ip("192.168.10.5")
    assert decide("http://127.0.0.1:9/x", [ip("127.0.0.1")], LAN).port == 9


def test_one_bad_address_among_several_refuses_the_host():
    """DNS answering a public and a private address (rebinding set-up) is refused whole."""
    with pytest.raises(Refused, match=r"10\.0\.0\.1"):
        decide("https://hook.example/", [ip("93.184.216.34"), ip("10.0.0.1")], ())


def test_allowed_networks_are_exact():
    with pytest.raises(Refused):
        decide("http://127.0.0.2/x", [ip("127.0.0.2")], LAN)
    with pytest.raises(Refused):
        decide("https://192.168.11.1/x", [ip("192.168.11.1")], LAN)


@pytest.mark.parametrize("url", ["ftp://x/y", "file:///etc/passwd", "https://user:pw@x.example/", "https:///nohost", "gopher://x"])
def test_only_plain_http_urls(url):
    with pytest.raises(Refused):
        decide(url, [ip("93.184.216.34")], ())


def test_bad_networks_setting_is_an_error():
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/33")
