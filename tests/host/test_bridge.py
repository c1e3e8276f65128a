"""The node's bridge keeps its MAC address while pods come and go.

A bridge whose address the kernel chose follows the lowest address among its
ports; pods then hold a stale gateway address in their ARP caches and lose the
node for up to a minute (seen as S3 connect timeouts in the middle of backups).
Runs create_bridge for real, as root, in a network namespace of its own so the
host is not touched.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import subprocess
from multiprocessing.connection import Connection

import pytest

from stackforge_operator.devcluster.node.network import NodeNetwork, create_bridge

CLONE_NEWNET = 0x40000000
# Lower than any address the bridge could otherwise keep: the kernel would adopt it.
LOW_MAC = "02:00:00:00:00:01"


def _mac(link: str) -> str:
    shown = subprocess.run(["ip", "-j", "link", "show", link], capture_output=True, text=True,
                           check=True).stdout
    address: str = json.loads(shown)[0]["address"]
    return address


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _bridge_addresses(network: NodeNetwork, sender: Connection) -> None:
    """In a new network namespace: the bridge's address at each step, sent back."""
    try:
        if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        create_bridge(network)
        seen = {"created": _mac(network.bridge)}
        _sh("ip", "link", "add", "sfpod0", "address", LOW_MAC, "type", "veth",
            "peer", "name", "sfpod1")
        _sh("ip", "link", "set", "sfpod0", "master", network.bridge)
        seen["pod attached"] = _mac(network.bridge)
        _sh("ip", "link", "delete", "sfpod0")
        seen["pod gone"] = _mac(network.bridge)
        sender.send(seen)
    except Exception as error:  # reported to the parent, which fails
        sender.send({"error": repr(error)})


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")
def test_bridge_address_is_fixed_while_ports_come_and_go() -> None:
    network = NodeNetwork()
    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(
        target=_bridge_addresses, args=(network, sender))
    child.start()
    child.join(30)
    assert receiver.poll(), f"the child sent nothing (exit code {child.exitcode})"
    seen = receiver.recv()
    assert "error" not in seen, seen.get("error", "")
    assert seen == {step: network.bridge_mac for step in ("created", "pod attached", "pod gone")}
