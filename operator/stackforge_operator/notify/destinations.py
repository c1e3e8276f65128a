"""Where notifications may go: every address a channel's host resolves to is checked
before the operator connects to it.

A tenant names its webhook URLs and mail servers, and the operator connects to
them from its own network position: inside the cluster, next to the API server
and often next to a cloud's metadata endpoint. Without a check a tenant could
make the operator send requests there (blind server-side request forgery). The
check runs on the resolved addresses, and the connection then goes to one of
those addresses: a second lookup, which a tenant's DNS server could answer
differently (DNS rebinding), never happens.

Denied by default: this host and unspecified addresses, link-local (cloud
metadata at 169.254.169.254 among them), multicast and reserved ranges, two
clouds' metadata addresses outside link-local, and the Kubernetes API's Service
address when the operator runs in a pod. Platform engineers add networks
(``STACKFORGE_NOTIFY_DENIED_NETWORKS``, say the cluster's pod and Service
ranges) and make exceptions (``STACKFORGE_NOTIFY_ALLOWED_NETWORKS``, say a mail
relay on a private address); an exception wins over a denial.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DENIED_ENV = "STACKFORGE_NOTIFY_DENIED_NETWORKS"
ALLOWED_ENV = "STACKFORGE_NOTIFY_ALLOWED_NETWORKS"

DEFAULT_DENIED = (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fe80::/10", "ff00::/8",
    # Metadata endpoints outside link-local: one cloud's IPv4, another's IPv6.
    "100.100.100.200/32", "fd00:ec2::254/128",
    # NAT64's local-use prefix: where in it the IPv4 address sits depends on the
    # network's prefix length (RFC 6052), so no single reading of it holds.
    "64:ff9b:1::/48",
)


class DestinationRefusedError(Exception):
    """A channel's host resolves to a denied address: no attempt will change that."""


def _networks(text: str, source: str) -> tuple[IpNetwork, ...]:
    networks = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{source}: {item!r} is not an IP network (CIDR)") from None
    return tuple(networks)


# IPv6 forms that carry an IPv4 address in their last 32 bits: NAT64's
# well-known prefix and the old IPv4-compatible form. Through
# a NAT64 gateway 64:ff9b::a9fe:a9fe reaches 169.254.169.254.
_EMBEDDING = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "::/96"))


def _forms(address: IpAddress) -> list[IpAddress]:
    """The address, and the IPv4 address it stands for when it embeds one."""
    if not isinstance(address, ipaddress.IPv6Address):
        return [address]
    if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 address
        return [address.ipv4_mapped]
    # :: and ::1 are themselves (unspecified, loopback), not 0.0.0.0 and 0.0.0.1.
    if int(address) > 1 and any(address in network for network in _EMBEDDING):
        return [address, ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return [address]


@dataclass(frozen=True)
class Destinations:
    denied: tuple[IpNetwork, ...]
    allowed: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, *, denied: str = "", allowed: str = "",
              defaults: Iterable[str] = DEFAULT_DENIED) -> Destinations:
        return cls(
            denied=_networks(" ".join(defaults), "default") + _networks(denied, DENIED_ENV),
            allowed=_networks(allowed, ALLOWED_ENV))

    def refusal(self, address: IpAddress) -> str | None:
        """Why ``address`` is refused, or None when it may be reached. An address
        that embeds an IPv4 one is judged as both: refused if either is."""
        for form in _forms(address):
            if any(form in network for network in self.allowed):
                continue
            for network in self.denied:
                if form in network:
                    return f"{form} is in a denied network ({network})"
        return None

    def check(self, addresses: Sequence[str]) -> list[str]:
        """``addresses`` (as resolved), each once, in order; raises DestinationRefusedError
        if any is denied: a name that also resolves to a denied address is refused
        whole, since which of its addresses a connection lands on is not ours to say."""
        checked: list[str] = []
        for text in addresses:
            # A scoped IPv6 address (fe80::1%eth0) carries its zone after '%'.
            refusal = self.refusal(ipaddress.ip_address(text.split("%", 1)[0]))
            if refusal is not None:
                raise DestinationRefusedError(refusal)
            if text not in checked:
                checked.append(text)
        return checked


def from_environ(environ: Mapping[str, str]) -> Destinations:
    """The operator's setting; raises ValueError naming the variable on a bad network."""
    denied = environ.get(DENIED_ENV, "")
    # In a pod, the API server's Service address: reachable from the operator's
    # position, never a notification's destination.
    api_host = environ.get("KUBERNETES_SERVICE_HOST", "")
    with contextlib.suppress(ValueError):  # not in a pod, or a name: nothing to add
        denied += f" {ipaddress.ip_address(api_host)}"
    return Destinations.parse(denied=denied, allowed=environ.get(ALLOWED_ENV, ""))


# What a Sender uses when it is given nothing: the defaults, no exception.
DEFAULT = Destinations.parse()


def resolve(host: str, port: int) -> list[str]:
    """``host``'s addresses for a TCP connection (blocking); OSError when it has none."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def connect(host: str, port: int, timeout: float,
            destinations: Destinations) -> socket.socket:
    """A TCP connection to a checked address of ``host`` (blocking), within
    ``timeout`` for all of its addresses together."""
    end = time.monotonic() + timeout
    error: OSError | None = None
    for address in destinations.check(resolve(host, port)):
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{host}: no address answered in time")
        try:
            return socket.create_connection((address, port), timeout=left)
        except OSError as failed:
            error = failed
    raise error or OSError(f"{host}: no address")
