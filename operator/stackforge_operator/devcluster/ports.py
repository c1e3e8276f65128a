"""Ports for a local cluster's listeners, chosen where no outgoing connection can take them.

A port the kernel hands out for ``bind(0)`` comes from its ephemeral range, the range it
also draws the source port of every outgoing connection from. Between choosing such a
port and the component's own bind (a process start later), an outgoing connection can
take it, and the tests and the cluster make thousands: a landing CI run lost a test to
that (the operator's liveness port, "address already in use"). A port below the ephemeral
range is never handed out implicitly, so only another listener can take it, and the
listeners here choose among about 20,000 at random.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Listeners choose from here. The upper end stops below kube-proxy's default NodePort
# range (30000-32767): the real node's kube-proxy may redirect traffic to a node port,
# including to 127.0.0.1.
LISTEN_RANGE = range(10000, 30000)
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_TRIES = 200
_chooser = random.SystemRandom()


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> range:
    """The kernel's range for implicit source ports (inclusive bounds in the file)."""
    try:
        low, high = (int(field) for field in path.read_text().split())
    except (OSError, ValueError):
        # Linux's default; other systems' ranges sit above LISTEN_RANGE too.
        return range(32768, 61000)
    return range(low, high + 1)


def listen_candidates(ephemeral: range) -> list[int]:
    """LISTEN_RANGE without the ephemeral range (empty if a machine made them overlap fully)."""
    return [port for port in LISTEN_RANGE if port not in ephemeral]


def bindable(port: int) -> bool:
    """Whether no local address has the port: the wildcard's bind fails while any
    address holds it. (Asked on 127.0.0.1 only, a port a listener held on the node's
    bridge address, where the API server, the kubelet and the S3 server listen,
    looked free.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))  # noqa: S104 - bound for a moment, never listening
        except OSError:
            return False
    return True


def free_port(ephemeral: range | None = None) -> int:
    """A port nothing listens on now, outside the ephemeral range where the machine allows."""
    candidates = listen_candidates(ephemeral_range() if ephemeral is None else ephemeral)
    for port in _chooser.sample(candidates, min(_TRIES, len(candidates))):
        if bindable(port):
            return port
    # No free port outside the ephemeral range: the kernel's choice is still a free port,
    # only one an outgoing connection may take before its listener binds it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 - as bindable
        chosen: int = sock.getsockname()[1]
        return chosen
