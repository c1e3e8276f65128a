"""Listener ports come from outside the kernel's ephemeral range and the NodePort range."""

from __future__ import annotations

import socket
from pathlib import Path

from stackforge_operator.devcluster.ports import (
    LISTEN_RANGE,
    ephemeral_range,
    free_port,
    listen_candidates,
)

NODE_PORTS = range(30000, 32768)


def test_a_chosen_port_is_free_and_outside_the_ephemeral_and_node_port_ranges() -> None:
    ephemeral = ephemeral_range()
    for _ in range(50):
        port = free_port()
        assert port not in ephemeral
        assert port not in NODE_PORTS
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_with_a_listener_is_never_chosen() -> None:
    ephemeral = range(10100, 65536)  # leaves 10000-10099: a hundred candidates
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", free_port(ephemeral)))
        taken.listen()
        busy = taken.getsockname()[1]
        assert busy in range(10000, 10100)
        assert all(free_port(ephemeral) != busy for _ in range(300))


def test_a_port_held_on_another_local_address_is_never_chosen() -> None:
    """The cluster's listeners bind the node's bridge address too (10.244.0.1):
    a port held there looked free when asked on 127.0.0.1."""
    ephemeral = range(10100, 65536)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.2", free_port(ephemeral)))  # lo holds all of 127/8
        taken.listen()
        busy = taken.getsockname()[1]
        assert all(free_port(ephemeral) != busy for _ in range(300))


def test_the_candidates_leave_out_an_ephemeral_range_reaching_into_the_listen_range() -> None:
    candidates = listen_candidates(range(20000, 61000))
    assert candidates == list(range(LISTEN_RANGE.start, 20000))


def test_a_machine_whose_ephemeral_range_covers_everything_still_gets_a_free_port() -> None:
    ephemeral = range(1024, 65536)
    assert listen_candidates(ephemeral) == []
    port = free_port(ephemeral)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_the_ephemeral_range_is_read_from_the_kernels_file(tmp_path: Path) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("40000\t50000\n")
    assert ephemeral_range(setting) == range(40000, 50001)
    assert ephemeral_range(tmp_path / "missing") == range(32768, 61000)
