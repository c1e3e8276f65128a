"""Which addresses a notification may reach: the defaults, a platform engineer's
additions and exceptions, and a name with several addresses."""

from __future__ import annotations

import ipaddress

import pytest

from stackforge_operator import config
from stackforge_operator.notify.destinations import (
    ALLOWED_ENV,
    DEFAULT,
    DENIED_ENV,
    DestinationRefusedError,
    Destinations,
)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::",  # noqa: S104 (addresses, not binds)
    "169.254.169.254",  # cloud metadata, link-local
    "::ffff:169.254.169.254",  # the same, written as IPv6
    "::ffff:127.0.0.1",
    "fe80::1", "100.100.100.200", "fd00:ec2::254", "224.0.0.1", "255.255.255.255",
    "64:ff9b::a9fe:a9fe",  # 169.254.169.254 through a NAT64 gateway
    "64:ff9b:1::7f00:1", "::7f00:1",  # local-use NAT64; the old IPv4-compatible form
    "64:ff9b:1:0:a9:feaa:200:0",  # 169.254.170.2 under a local-use /64 NAT64 prefix
])
def test_the_defaults_refuse_this_host_link_local_metadata_and_multicast(address: str) -> None:
    refusal = DEFAULT.refusal(ipaddress.ip_address(address))
    assert refusal is not None and "denied network" in refusal


@pytest.mark.parametrize("address", ["93.184.216.34", "10.1.2.3", "192.168.0.9",
                                     "2606:4700::1111", "100.64.0.1",
                                     "64:ff9b::5db8:d822"])  # 93.184.216.34 via NAT64
def test_the_defaults_let_public_and_private_addresses_through(address: str) -> None:
    # A mail relay or a chat proxy on a private network is a common destination;
    # denying private ranges is the platform's choice (DENIED_ENV), not a default.
    assert DEFAULT.refusal(ipaddress.ip_address(address)) is None


def test_an_added_network_is_refused_and_an_exception_wins_over_any_denial() -> None:
    destinations = config.notify_destinations({
        DENIED_ENV: "10.0.0.0/8, 172.16.0.0/12",
        ALLOWED_ENV: "10.9.0.0/16 127.0.0.1/32"})
    assert destinations.refusal(ipaddress.ip_address("10.1.2.3")) is not None
    assert destinations.refusal(ipaddress.ip_address("172.20.0.1")) is not None
    assert destinations.refusal(ipaddress.ip_address("10.9.1.1")) is None
    assert destinations.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert destinations.refusal(ipaddress.ip_address("127.0.0.2")) is not None


def test_the_api_servers_service_address_is_refused_in_a_pod() -> None:
    in_pod = config.notify_destinations({"KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    assert in_pod.refusal(ipaddress.ip_address("10.96.0.1")) is not None
    assert in_pod.refusal(ipaddress.ip_address("10.96.0.2")) is None
    # Outside a pod the variable is absent, or a name: nothing more is refused.
    assert config.notify_destinations({"KUBERNETES_SERVICE_HOST": "api.example"}) == DEFAULT


def test_a_bad_network_names_its_setting() -> None:
    with pytest.raises(ValueError, match=f"{ALLOWED_ENV}: 'ten-dot' is not an IP network"):
        config.notify_destinations({ALLOWED_ENV: "10.0.0.0/8 ten-dot"})


def test_a_name_with_one_denied_address_among_others_is_refused_whole() -> None:
    assert DEFAULT.check(["93.184.216.34", "93.184.216.34", "2606:4700::1111"]) == [
        "93.184.216.34", "2606:4700::1111"]
    with pytest.raises(DestinationRefusedError, match=r"169\.254\.169\.254"):
        DEFAULT.check(["93.184.216.34", "169.254.169.254"])
    with pytest.raises(DestinationRefusedError):
        DEFAULT.check(["fe80::1%eth0"])  # a scoped address is judged by its address
    assert Destinations.parse(allowed="fe80::/10").check(["fe80::1%eth0"]) == ["fe80::1%eth0"]


def test_an_exception_for_this_hosts_ipv6_address_holds() -> None:
    """::1 is loopback, not the IPv4-compatible form of 0.0.0.1 (which is denied)."""
    local = Destinations.parse(allowed="127.0.0.0/8 ::1/128")
    assert local.refusal(ipaddress.ip_address("::1")) is None
    assert local.refusal(ipaddress.ip_address("::7f00:1")) is None  # 127.0.0.1, allowed
    assert local.refusal(ipaddress.ip_address("::a9fe:a9fe")) is not None
